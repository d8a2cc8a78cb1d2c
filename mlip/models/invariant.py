"""``model=invariant``: invariant atom-centred descriptors fed to per-element MLPs."""

from typing import Dict, Iterable, List

import torch

from mlip import keys
from mlip.models.descriptor import SphericalPowerDescriptor
from mlip.models.energy import AtomicEnergies
from mlip.models.readout import PerSpeciesMLP


class InvariantDescriptorModel(torch.nn.Module):
    """Energy model. Batch in (see ``mlip.keys``); adds ``atomic_energy`` [N] and
    ``total_energy`` [B] in eV.

    ``species``: atomic numbers in model order; ``e0``: eV per atom of each, same order;
    ``scale`` (eV) and ``shift`` (eV/atom) set the output range from training statistics.
    Descriptor features are standardised with means and deviations measured on training data at
    set-up (``initialize_from_data``).
    """

    def __init__(self, species: List[int], cutoff: float, e0: List[float], scale: float = 1.0,
                 shift: float = 0.0, avg_num_neighbors: float = 1.0, num_basis: int = 8,
                 num_channels: int = 12, l_max: int = 3, hidden: List[int] = (64, 64), cutoff_p: int = 6):
        super().__init__()
        self.species: List[int] = [int(z) for z in species]
        self.cutoff = float(cutoff)
        n = len(self.species)
        self.descriptor = SphericalPowerDescriptor(n, cutoff, num_basis, num_channels, l_max,
                                                   avg_num_neighbors, cutoff_p)
        f = self.descriptor.num_features
        self.register_buffer("feature_mean", torch.zeros(f))
        self.register_buffer("feature_std", torch.ones(f))
        self.readout = PerSpeciesMLP(n, f, list(hidden))
        self.energies = AtomicEnergies(e0, scale, shift)

    def forward(self, data: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        x = (self.descriptor(data) - self.feature_mean) / self.feature_std
        y = self.readout(x, data[keys.SPECIES])
        return self.energies(y, data)

    def identifiability_parameters(self) -> List[str]:
        """Default tensors of ``mlip identifiability``: each element's output layer (weight and
        bias), E0, scale and shift. (Bias, E0 and shift are collinear in the energies, and scale
        with the output layer: the analysis shows these exact degeneracies as zero eigenvalues.)"""
        names: List[str] = []
        for k, net in enumerate(self.readout.nets):
            last = len(net) - 1
            names += [f"readout.nets.{k}.{last}.weight", f"readout.nets.{k}.{last}.bias"]
        return names + ["energies.e0", "energies.scale", "energies.shift"]

    @torch.no_grad()
    def initialize_from_data(self, batches: Iterable[Dict[str, torch.Tensor]]) -> None:
        """Set feature means and deviations from training batches (float64 accumulation)."""
        xs = [self.descriptor(b).double() for b in batches]
        x = torch.cat(xs)
        self.feature_mean.copy_(x.mean(0))
        self.feature_std.copy_(x.std(0).clamp_min(1e-6) if x.shape[0] > 1 else torch.ones_like(x[0]))
