"""Screened nuclear repulsion (Ziegler-Biersack-Littmark universal potential), switched off
smoothly well inside the bonding distance, so that close contacts repel even where the training
data has no frames.

E_ij = k_e Z_i Z_j / r * phi(r / a) * f(r / r_out),   a = 0.46850 / (Z_i^0.23 + Z_j^0.23) Å,
phi(x) = 0.18175 e^(-3.19980 x) + 0.50986 e^(-0.94229 x) + 0.28022 e^(-0.40290 x) + 0.02817 e^(-0.20162 x),
k_e = 14.399645 eV Å, f the polynomial envelope (C2-smooth, zero at and beyond r_out), and
r_out = ``fraction`` x (covalent radius_i + covalent radius_j). Each pair's energy is shared
equally between its two atoms. Energies in eV, distances in Å.
"""

from typing import Dict, List

import torch

from mlip import keys
from mlip.nn.geometry import edge_vectors
from mlip.nn.scatter import scatter_sum

COULOMB = 14.399645  # eV Å: e^2 / (4 pi eps0)
PHI_C = (0.18175, 0.50986, 0.28022, 0.02817)
PHI_D = (3.19980, 0.94229, 0.40290, 0.20162)
#: r_out as a fraction of the sum of covalent radii (Cu-Cu: 1.6 Å against a 2.55 Å bond)
DEFAULT_FRACTION = 0.6


class ZBLRepulsion(torch.nn.Module):
    """Per-atom ZBL energies [N] (eV) of a batch whose ``species`` index ``atomic_numbers``."""
    z: torch.Tensor
    radius: torch.Tensor

    def __init__(self, atomic_numbers: List[int], fraction: float = DEFAULT_FRACTION, p: int = 6):
        super().__init__()
        from ase.data import covalent_radii

        self.register_buffer("z", torch.tensor([float(z) for z in atomic_numbers], dtype=torch.get_default_dtype()))
        self.register_buffer("radius", torch.tensor([float(covalent_radii[z]) for z in atomic_numbers],
                                                    dtype=torch.get_default_dtype()))
        self.fraction = float(fraction)
        self.p = float(p)

    def forward(self, data: Dict[str, torch.Tensor]) -> torch.Tensor:
        species = data[keys.SPECIES]
        i = data[keys.EDGE_INDEX][0]
        j = data[keys.EDGE_INDEX][1]
        si = species.index_select(0, i)
        sj = species.index_select(0, j)
        r = torch.linalg.norm(edge_vectors(data), dim=1)
        r_out = self.fraction * (self.radius.index_select(0, si) + self.radius.index_select(0, sj))
        close = r < r_out
        zi = self.z.index_select(0, si)
        zj = self.z.index_select(0, sj)
        safe_r = torch.where(close, r, r_out)  # no work (and no inf gradients) beyond r_out
        a = 0.46850 / (zi.pow(0.23) + zj.pow(0.23))  # Å
        x = safe_r / a
        phi = (0.18175 * torch.exp(-3.19980 * x) + 0.50986 * torch.exp(-0.94229 * x)
               + 0.28022 * torch.exp(-0.40290 * x) + 0.02817 * torch.exp(-0.20162 * x))  # PHI_C, PHI_D
        u = safe_r / r_out
        p = self.p
        envelope = (1.0 - 0.5 * (p + 1.0) * (p + 2.0) * u.pow(p) + p * (p + 2.0) * u.pow(p + 1.0)
                    - 0.5 * p * (p + 1.0) * u.pow(p + 2.0))
        pair = 14.399645 * zi * zj / safe_r * phi * envelope * close.to(r.dtype)
        return 0.5 * scatter_sum(pair, i, species.shape[0])
