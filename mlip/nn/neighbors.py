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


class ExportableNeighborList(torch.nn.Module):
    """Brute-force full neighbour list written for ``torch.export`` / AOTInductor (no Python loop or
    branch on tensor values): every pair (i, j) and lattice image S with |r_j - r_i + S @ cell| <
    ``cutoff``, the same edge set as ``torch_neighbor_list`` and vesin.

    The images come from a fixed grid S in {-R..R}^3 (R = ``max_images``), masked to the ones each
    periodic direction needs (ceil(cutoff / cell height)); distances are computed for all of them
    at once, so time and memory grow as N^2 x images ([M, N, N] floats; about 27 N^2 for cells
    higher than the cutoff): meant for small systems, engines pass their own list.

    ``forward(positions [N, 3] Å, cell [3, 3] Å (rows; zero rows allowed where not periodic),
    pbc [3] bool)`` returns ``edge_index`` [2, E] int64, ``shifts`` [E, 3] (dtype of positions)
    and ``ok`` [] bool, False when a periodic direction would need more than R images (a cell
    thinner than cutoff / R) or the cell is singular; the list is then incomplete. A compiled
    graph cannot raise, so callers check ``ok``.
    """
    image_grid: torch.Tensor

    def __init__(self, cutoff: float, max_images: int = 4):
        super().__init__()
        self.cutoff = float(cutoff)
        self.max_images = int(max_images)
        r = torch.arange(-self.max_images, self.max_images + 1, dtype=torch.float64)
        self.register_buffer("image_grid", torch.cartesian_prod(r, r, r))  # [(2R+1)^3, 3]

    def forward(self, positions: torch.Tensor, cell: torch.Tensor,
                pbc: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        dtype, device = positions.dtype, positions.device
        n = positions.shape[0]
        # zero rows of non-periodic directions become unit vectors so the heights stay defined
        filled = pbc | (cell.abs().sum(dim=1) > 0)
        c = torch.where(filled.unsqueeze(1), cell, torch.eye(3, dtype=dtype, device=device))
        normals = torch.stack([torch.linalg.cross(c[1], c[2]), torch.linalg.cross(c[2], c[0]),
                               torch.linalg.cross(c[0], c[1])])
        volume = (c[0] * normals[0]).sum().abs()
        inverse_height = normals.norm(dim=1) / volume  # 1/Å, one per lattice direction
        reps = torch.where(pbc, torch.ceil(self.cutoff * inverse_height), torch.zeros_like(inverse_height))
        ok = torch.isfinite(reps).all() & (reps <= self.max_images).all()
        reps = torch.where(ok, reps, torch.zeros_like(reps))
        grid = self.image_grid.to(dtype)
        images = grid[(grid.abs() <= reps.unsqueeze(0)).all(dim=1)]  # [M, 3]
        diff = positions.unsqueeze(0) - positions.unsqueeze(1)  # [N, N, 3]: r_j - r_i at [i, j]
        d2 = ((diff.unsqueeze(0) + (images @ cell)[:, None, None, :]) ** 2).sum(dim=-1)  # [M, N, N]
        home = images.abs().sum(dim=1) == 0
        self_pair = home[:, None, None] & torch.eye(n, dtype=torch.bool, device=device).unsqueeze(0)
        found = ((d2 < self.cutoff ** 2) & ~self_pair).nonzero()  # [E, 3]: image, i, j
        return found[:, 1:].t(), images.index_select(0, found[:, 0]), ok
