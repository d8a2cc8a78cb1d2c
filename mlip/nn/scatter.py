"""Reductions over atoms and edges with native torch scatter (no torch-scatter)."""

import torch


def scatter_sum(src: torch.Tensor, index: torch.Tensor, dim_size: int) -> torch.Tensor:
    """Sum rows of ``src`` [M, ...] into ``dim_size`` bins given by ``index`` [M]."""
    out = torch.zeros((dim_size,) + src.shape[1:], dtype=src.dtype, device=src.device)
    return out.index_add_(0, index, src)
