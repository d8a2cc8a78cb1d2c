"""Per-element multilayer perceptrons: features of an atom -> its (scaled) energy."""

from typing import List

import torch


def mlp(sizes: List[int]) -> torch.nn.Sequential:
    layers: List[torch.nn.Module] = []
    for k in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[k], sizes[k + 1]))
        if k < len(sizes) - 2:
            layers.append(torch.nn.SiLU())
    return torch.nn.Sequential(*layers)


class PerSpeciesMLP(torch.nn.Module):
    """One MLP per element (Behler-Parrinello). ``x`` [N, F], ``species`` [N] -> [N]."""

    def __init__(self, num_species: int, num_features: int, hidden: List[int]):
        super().__init__()
        self.nets = torch.nn.ModuleList([mlp([num_features] + list(hidden) + [1]) for _ in range(num_species)])
        for net in self.nets:
            last = list(net.children())[-1]
            assert isinstance(last, torch.nn.Linear)
            torch.nn.init.normal_(last.weight, std=0.01)
            torch.nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor, species: torch.Tensor) -> torch.Tensor:
        if len(self.nets) == 1:
            return self.nets[0](x).squeeze(1)
        out = torch.zeros(x.shape[0], dtype=x.dtype, device=x.device)
        for s, net in enumerate(self.nets):
            # no branch on idx.numel(): an empty selection is harmless, and a data-dependent
            # branch would stop torch.export (AOTInductor)
            idx = torch.nonzero(species == s).squeeze(1)
            out = out.index_copy(0, idx, net(x.index_select(0, idx)).squeeze(1))
        return out
