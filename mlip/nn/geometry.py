"""Edge vectors and cell volumes from a batch."""

from typing import Dict

import torch

from mlip import keys


def edge_vectors(data: Dict[str, torch.Tensor]) -> torch.Tensor:
    """r_ij = r_j - r_i + S_ij @ cell, [E, 3] in Å, differentiable in positions and cell."""
    pos = data[keys.POSITIONS]
    i = data[keys.EDGE_INDEX][0]
    j = data[keys.EDGE_INDEX][1]
    cell = data[keys.CELL][data[keys.BATCH][i]]  # [E, 3, 3]
    shift = torch.bmm(data[keys.CELL_SHIFTS].unsqueeze(1), cell).squeeze(1)
    return pos[j] - pos[i] + shift


def cell_volume(cell: torch.Tensor) -> torch.Tensor:
    """|det(cell)| [B] in Å³ for ``cell`` [B, 3, 3]; 0 for molecules (zero cell)."""
    return torch.linalg.det(cell).abs()
