"""Edge vectors and cell volumes from a batch."""

from typing import Dict

import torch

from mlip import keys


def edge_vectors(data: Dict[str, torch.Tensor]) -> torch.Tensor:
    """r_ij = r_j - r_i + S_ij @ cell, [E, 3] in Å, differentiable in positions and cell."""
    pos = data[keys.POSITIONS]
    i = data[keys.EDGE_INDEX][0]
    j = data[keys.EDGE_INDEX][1]
    # index_select, not x[idx]: its backward is a fast index_add_ rather than index_put_
    cell = data[keys.CELL].index_select(0, data[keys.BATCH].index_select(0, i))  # [E, 3, 3]
    shift = torch.bmm(data[keys.CELL_SHIFTS].unsqueeze(1), cell).squeeze(1)
    return pos.index_select(0, j) - pos.index_select(0, i) + shift


def cell_volume(cell: torch.Tensor) -> torch.Tensor:
    """|det(cell)| [B] in Å³ for ``cell`` [B, 3, 3]; 0 for molecules (zero cell)."""
    return torch.linalg.det(cell).abs()
