"""Neighbour lists with periodic shift vectors.

Convention: an edge (i, j, S) means atom j seen from atom i at r_j - r_i + S @ cell, with
|r_ij| < cutoff. Lists are full (both i->j and j->i) and correct for cells smaller than twice the
cutoff (an atom may then see several images of the same neighbour, or its own images).

``vesin_neighbor_list`` (C++, used for data and the ASE calculator) and ``torch_neighbor_list``
(TorchScript, used inside exported models that must run without mlip) give the same edge sets.
"""

from typing import List, Tuple

import numpy as np
import torch
import vesin


def vesin_neighbor_list(
    positions: np.ndarray, cell: np.ndarray, pbc: np.ndarray, cutoff: float
) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges of one frame: ``edge_index`` [2, E] int64, ``shifts`` [E, 3] int64, ``distances`` [E] Å.

    ``positions`` [N, 3] Å; ``cell`` [3, 3] Å (rows are lattice vectors; ignored where not periodic);
    ``pbc`` [3] bool.
    """
    positions = np.ascontiguousarray(positions, dtype=np.float64)
    pbc = np.asarray(pbc, dtype=bool)
    box = np.ascontiguousarray(cell, dtype=np.float64)
    if not pbc.any():
        box = np.zeros((3, 3))
    calc = vesin.NeighborList(cutoff=float(cutoff), full_list=True, sorted=True)
    i, j, S, d = calc.compute(points=positions, box=box, periodic=pbc.tolist(), quantities="ijSd")
    edge_index = np.stack([i, j]).astype(np.int64)
    return edge_index, S.astype(np.int64), d


def _images_per_direction(cell: torch.Tensor, pbc: torch.Tensor, cutoff: float) -> List[int]:
    """How many cell images along each lattice vector can hold a neighbour within ``cutoff``."""
    out: List[int] = []
    volume = torch.linalg.det(cell).abs()
    for k in range(3):
        if bool(pbc[k]):
            a = cell[(k + 1) % 3]
            b = cell[(k + 2) % 3]
            height = volume / torch.linalg.norm(torch.linalg.cross(a, b))
            out.append(int(torch.ceil(cutoff / height).item()))
        else:
            out.append(0)
    return out


def torch_neighbor_list(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Brute-force O(N^2 x images) neighbour list in pure torch (TorchScript-compatible).

    Returns ``edge_index`` [2, E] long and ``shifts`` [E, 3] in the dtype of ``positions``.
    Meant for exported models and checks; the trainer uses ``vesin_neighbor_list``.
    """
    n = positions.shape[0]
    reps = _images_per_direction(cell, pbc, cutoff)
    dtype = positions.dtype
    device = positions.device
    idx = torch.arange(n, device=device)
    ii = idx.unsqueeze(1).expand(n, n).reshape(-1)
    jj = idx.unsqueeze(0).expand(n, n).reshape(-1)
    diff = (positions.unsqueeze(0) - positions.unsqueeze(1)).reshape(-1, 3)  # r_j - r_i
    senders: List[torch.Tensor] = []
    receivers: List[torch.Tensor] = []
    shifts: List[torch.Tensor] = []
    for a in range(-reps[0], reps[0] + 1):
        for b in range(-reps[1], reps[1] + 1):
            for c in range(-reps[2], reps[2] + 1):
                s = torch.tensor([a, b, c], dtype=dtype, device=device)
                d = torch.linalg.norm(diff + s @ cell, dim=1)
                keep = d < cutoff
                if a == 0 and b == 0 and c == 0:
                    keep = keep & (ii != jj)
                senders.append(ii[keep])
                receivers.append(jj[keep])
                shifts.append(s.unsqueeze(0).expand(int(keep.sum()), 3))
    edge_index = torch.stack([torch.cat(senders), torch.cat(receivers)])
    return edge_index, torch.cat(shifts)
