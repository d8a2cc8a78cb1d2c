"""Radial basis functions of the interatomic distance."""

import math

import torch


class BesselBasis(torch.nn.Module):
    """b_n(r) = sqrt(2 / r_c) sin(n pi r / r_c) / r, n = 1..num_basis (DimeNet / NequIP).

    ``r`` [E] in Å; returns [E, num_basis] in 1/Å. Frequencies are trainable when ``trainable``.
    """
    frequencies: torch.Tensor

    def __init__(self, cutoff: float, num_basis: int = 8, trainable: bool = False):
        super().__init__()
        self.cutoff = float(cutoff)
        self.prefactor = math.sqrt(2.0 / self.cutoff)
        freqs = torch.arange(1, num_basis + 1, dtype=torch.get_default_dtype()) * math.pi / self.cutoff
        if trainable:
            self.frequencies = torch.nn.Parameter(freqs)
        else:
            self.register_buffer("frequencies", freqs)

    def forward(self, r: torch.Tensor) -> torch.Tensor:
        r = r.unsqueeze(-1)
        return self.prefactor * torch.sin(self.frequencies * r) / r
