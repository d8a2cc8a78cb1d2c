"""Higher body order on each atom: the symmetric contraction of MACE.

From the atomic basis A_i [C, D] (a sum over neighbours, hence two-body), output irrep L of
channel c is

    B_i[c, L, M] = sum_{nu=1..correlation} sum_k w_nu[Z_i, k, c] sum_{d1..d_nu} U_nu[M, d1..d_nu, k]
                   A_i[c, d1] ... A_i[c, d_nu]

with U_nu the generalised Clebsch-Gordan tensors (``mlip.models.coupling.symmetric_coupling``) and
one weight per coupling path, species and channel: body order correlation + 1. As in MACE, the
weights are contracted with U first and the result with A one index at a time (Horner's scheme),
which costs C * M * D^nu per atom for the highest order.
"""

from typing import List

import numpy as np
import torch

from mlip.models.coupling import Irrep, irreps_dim, symmetric_coupling


class _OutputIrrep(torch.nn.Module):
    """The contraction for one output irrep (2L+1 components)."""

    def __init__(self, ls: List[Irrep], out: Irrep, correlation: int, num_species: int, channels: int):
        super().__init__()
        self.d = irreps_dim(ls)
        self.m = 2 * out[0] + 1
        self.correlation = correlation
        self.channels = channels
        us = []
        for nu in (1, 2, 3):
            u = symmetric_coupling(ls, out, nu) if nu <= correlation else torch.zeros((self.m,) + (self.d,) * nu + (0,))
            us.append(u.reshape(int(np.prod(u.shape[:-1])), u.shape[-1]).to(torch.get_default_dtype()))
        self.register_buffer("u1", us[0])
        self.register_buffer("u2", us[1])
        self.register_buffer("u3", us[2])
        self.w1 = torch.nn.Parameter(torch.ones(num_species, us[0].shape[1], channels))
        self.w2 = torch.nn.Parameter(torch.randn(num_species, us[1].shape[1], channels) / max(us[1].shape[1], 1))
        self.w3 = torch.nn.Parameter(torch.randn(num_species, us[2].shape[1], channels) / max(us[2].shape[1], 1))

    def forward(self, x: torch.Tensor, s: int) -> torch.Tensor:
        """``x`` [C, n, D] (atoms of species index ``s``) -> [n, C, M]."""
        c, d, m = self.channels, self.d, self.m
        n = x.shape[1]
        xb = x.unsqueeze(2)  # [C, n, 1, D]
        c1 = (self.u1 @ self.w1[s]).transpose(0, 1).unsqueeze(1)  # [C, 1, M*D]
        # contract one index at a time; the batched matrix-vector steps as multiply-and-sum, whose
        # backward is elementwise too (bmm with thousands of 16x16 blocks is slower on CPU)
        if self.correlation >= 3:
            c3 = (self.u3 @ self.w3[s]).view(m * d * d, d, c).permute(2, 1, 0)  # [C, D, M*D*D]
            c2 = (self.u2 @ self.w2[s]).transpose(0, 1).unsqueeze(1)  # [C, 1, M*D*D]
            t = torch.baddbmm(c2, x, c3)  # [C, n, M*D*D]
            t = (t.view(c, n, m * d, d) * xb).sum(3) + c1  # [C, n, M*D]
        elif self.correlation == 2:
            c2 = (self.u2 @ self.w2[s]).view(m * d, d, c).permute(2, 1, 0)  # [C, D, M*D]
            t = torch.baddbmm(c1, x, c2)  # [C, n, M*D]
        else:
            t = c1.expand(c, n, m * d)
        t = (t.reshape(c, n, m, d) * xb).sum(3)  # [C, n, M]
        return t.transpose(0, 1)


class SymmetricProduct(torch.nn.Module):
    """``a`` [N, C, D] (irreps ``ls_a`` per channel), ``species`` [N] -> [N, C, D_out]."""

    def __init__(self, ls_a: List[Irrep], ls_out: List[Irrep], correlation: int, num_species: int, channels: int):
        super().__init__()
        if not 1 <= correlation <= 3:
            raise ValueError(f"correlation={correlation}: supported are 1, 2 and 3")
        self.num_species = num_species
        self.blocks = torch.nn.ModuleList([_OutputIrrep(ls_a, out, correlation, num_species, channels)
                                           for out in ls_out])

    def _contract(self, x: torch.Tensor, s: int) -> torch.Tensor:
        return torch.cat([block(x, s) for block in self.blocks], dim=2)

    def forward(self, a: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        x = a.transpose(0, 1).contiguous()  # [C, N, D]
        if self.num_species == 1:
            return self._contract(x, 0)
        out = torch.zeros(0)
        first = True
        for s in range(self.num_species):
            idx = torch.nonzero(species == s).squeeze(1)
            part = self._contract(x.index_select(1, idx), s)
            if first:
                out = torch.zeros((a.shape[0],) + part.shape[1:], dtype=a.dtype, device=a.device)
                first = False
            out = out.index_copy(0, idx, part)
        return out
