"""Equivariant linear maps across channels."""

from typing import List

import torch

from mlip.nn.equivariant.irreps import Irrep, irrep_of_component


class ChannelMix(torch.nn.Module):
    """Equivariant linear map [N, C, D] -> [N, C, D]: one C x C matrix per irrep of ``ls``, shared
    by its 2l+1 components (per species when ``num_species`` > 1, selected by ``species`` [N])."""
    irrep_of_component: torch.Tensor

    def __init__(self, ls: List[Irrep], channels: int, num_species: int = 1):
        super().__init__()
        self.num_species = num_species
        self.channels = channels
        self.weight = torch.nn.Parameter(torch.randn(num_species, len(ls), channels, channels) / channels ** 0.5)
        self.register_buffer("irrep_of_component", torch.tensor(irrep_of_component(ls), dtype=torch.long))

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        n, c, d = x.shape
        # [D, N, C], contiguous: CPU bmm runs one batched product on contiguous slices, but loops
        # over D with a copy of each slice (in forward and in every backward) on strided ones
        xt = x.permute(2, 0, 1).contiguous()
        if self.num_species == 1:
            w = self.weight[0].index_select(0, self.irrep_of_component)  # [D, C, C]
            return torch.bmm(xt, w).permute(1, 2, 0)
        w = self.weight.permute(1, 2, 0, 3).reshape(-1, c, self.num_species * c)
        y = torch.bmm(xt, w.index_select(0, self.irrep_of_component)).view(d, n, self.num_species, c)
        onehot = torch.nn.functional.one_hot(species, self.num_species).to(x.dtype)
        return (y * onehot.view(1, n, self.num_species, 1)).sum(2).permute(1, 2, 0)
