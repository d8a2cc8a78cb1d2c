"""Shared tail of every energy model: per-atom energies E_i = scale * y_i + shift + E0[Z_i]
(+ the ZBL repulsion when ``model.zbl=true``, + D3 dispersion when ``model.d3=<functional>``), summed per
frame. ``y_i`` comes from the model's body."""

from typing import Dict, List, Optional

import torch

from mlip import keys
from mlip.nn.dispersion import D3Dispersion
from mlip.nn.scatter import scatter_sum
from mlip.nn.zbl import ZBLRepulsion


class AtomicEnergies(torch.nn.Module):
    """Scale, shift and E0 (eV), held as buffers so they are saved, exported and never trained.
    ``trainable_e0=True`` (classical models' ``fit_e0``) makes E0 a parameter of the same name."""
    e0: torch.Tensor
    scale: torch.Tensor
    shift: torch.Tensor

    def __init__(self, e0: List[float], scale: float = 1.0, shift: float = 0.0, trainable_e0: bool = False):
        super().__init__()
        e0_tensor = torch.tensor(e0, dtype=torch.get_default_dtype())
        if trainable_e0:
            self.e0 = torch.nn.Parameter(e0_tensor)
        else:
            self.register_buffer("e0", e0_tensor)
        self.register_buffer("scale", torch.tensor(float(scale)))
        self.register_buffer("shift", torch.tensor(float(shift)))

        self.zbl: Optional[ZBLRepulsion] = None
        self.d3: Optional[D3Dispersion] = None

    def enable_zbl(self, atomic_numbers: List[int]) -> None:
        """Add the screened nuclear repulsion (``mlip.nn.zbl``) to every atom's energy."""
        self.zbl = ZBLRepulsion(atomic_numbers).to(self.scale.dtype)

    def enable_d3(self, atomic_numbers: List[int], functional: str, cutoff: Optional[float] = None,
                  in_labels: bool = True) -> None:
        """Add D3(BJ) dispersion of ``functional`` (``mlip.nn.dispersion``; ``cutoff`` Å). With
        ``in_labels=False`` the labels hold no dispersion: the term stays off in training and is
        switched on in the exported files (``activate_d3``)."""
        self.d3 = D3Dispersion(atomic_numbers, functional, cutoff=cutoff, active=in_labels).to(self.scale.dtype)

    def forward(self, y: torch.Tensor, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        atomic = self.scale * y + self.shift + self.e0.index_select(0, data[keys.SPECIES])
        zbl = self.zbl
        if zbl is not None:
            atomic = atomic + zbl(data)
        d3 = self.d3
        if d3 is not None:
            atomic = atomic + d3(data).to(atomic.dtype)
        out = dict(data)
        out[keys.ATOMIC_ENERGY] = atomic
        # summed in float64: index_add_ adds atom after atom, and in float32 the total of a large
        # structure drifted (3.7 eV, 1e-5 relative, on 64,000 Si atoms)
        out[keys.TOTAL_ENERGY] = scatter_sum(atomic.double(), data[keys.BATCH],
                                             data[keys.N_ATOMS].shape[0]).to(atomic.dtype)
        return out

    def of_centres(self, y: torch.Tensor, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-atom energies (eV) [M] of the first M atoms of ``data`` (the centres of a domain,
        the contract's ``exchange_energies``) from their model outputs ``y`` [M]; the pair terms
        (ZBL) over the edges centred on them."""
        m = y.shape[0]
        padded = torch.cat([y, y.new_zeros(data[keys.SPECIES].shape[0] - m)])
        return self(padded, data)[keys.ATOMIC_ENERGY][:m]
