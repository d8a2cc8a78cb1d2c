"""Neighbour lists with periodic shift vectors.

Convention: an edge (i, j, S) means atom j seen from atom i at r_j - r_i + S @ cell, with
|r_ij| < cutoff. Lists are full (both i->j and j->i) and correct for cells smaller than twice the
cutoff (an atom may then see several images of the same neighbour, or its own images).

``vesin_neighbor_list`` (C++, used for data and the ASE calculator) and ``torch_neighbor_list``
(a TorchScript cell list, used inside exported models that must run without mlip) give the same
edge sets. ``ExportableNeighborList`` (brute force, for ``torch.export``) gives it too.
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


def _search_basis(cell: torch.Tensor, pbc: torch.Tensor) -> torch.Tensor:
    """Rows spanning space for binning: the lattice vector where periodic, and where not, unit
    vectors orthogonal to the periodic ones and to each other (so a non-periodic coordinate is a
    length in Å and a zero or degenerate cell row does no harm). [3, 3], rows."""
    basis = torch.zeros(3, 3, dtype=cell.dtype, device=cell.device)
    taken: List[torch.Tensor] = []
    for k in range(3):
        if bool(pbc[k]):
            basis[k] = cell[k]
            taken.append(cell[k] / torch.linalg.norm(cell[k]))
    eye = torch.eye(3, dtype=cell.dtype, device=cell.device)
    for k in range(3):
        if not bool(pbc[k]):
            best = eye[0]
            best_norm = -1.0
            for c in range(3):  # Gram-Schmidt on the axis that keeps the most length
                v = eye[c]
                for t in taken:
                    v = v - (v * t).sum() * t
                norm = float(torch.linalg.norm(v))
                if norm > best_norm + 1e-9:
                    best, best_norm = v, norm
            unit = best / best_norm
            basis[k] = unit
            taken.append(unit)
    return basis


def _bin_of(frac: torch.Tensor, lo: torch.Tensor, width: torch.Tensor, n_bins: torch.Tensor) -> torch.Tensor:
    """Integer bin [P, 3] of points at fractional coordinates ``frac`` [P, 3], clamped to the grid."""
    return torch.minimum(torch.clamp(torch.floor((frac - lo) / width), min=0.0).to(torch.long), n_bins - 1)


def torch_neighbor_list(
    positions: torch.Tensor, cell: torch.Tensor, pbc: torch.Tensor, cutoff: float
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Full neighbour list by a cell list in pure torch (TorchScript-compatible): O(N) time and
    memory for a fixed density, so a ``model.pt`` run without an engine's list scales to large
    cells. The same edge set as vesin (tests/test_neighbors.py), in another order.

    How: positions are wrapped into the cell along periodic directions; image copies are made of
    the atoms within ``cutoff`` of a cell face (every image that any atom can see); all points are
    sorted into bins at least ``cutoff`` thick along each lattice direction, and each atom is
    compared with the points of its 27 neighbouring bins only.

    ``positions`` [N, 3] Å, ``cell`` [3, 3] Å (rows; ignored where not periodic), ``pbc`` [3] bool.
    Returns ``edge_index`` [2, E] long and ``shifts`` [E, 3] in the dtype of ``positions``: edge
    (i, j, S) is atom j seen from atom i at r_j - r_i + S @ cell.
    """
    n = positions.shape[0]
    dtype, device = positions.dtype, positions.device
    if n == 0:
        return torch.zeros(2, 0, dtype=torch.long, device=device), torch.zeros(0, 3, dtype=dtype, device=device)
    pbc = pbc.to(device=device, dtype=torch.bool)
    basis = _search_basis(cell.to(dtype), pbc)
    frac = positions @ torch.linalg.inv(basis)  # [N, 3]: lattice units where periodic, Å where not
    periodic = pbc.to(dtype)
    wrap = torch.floor(frac) * periodic  # r_wrapped = r - wrap @ cell
    frac = frac - wrap
    normals = torch.stack([torch.linalg.cross(basis[1], basis[2]), torch.linalg.cross(basis[2], basis[0]),
                           torch.linalg.cross(basis[0], basis[1])])
    height = torch.linalg.det(basis).abs() / torch.linalg.norm(normals, dim=1)  # Å per unit of frac, [3]
    reach = cutoff * (1.0 + 1e-5)  # Å; the margin absorbs rounding in the fractional coordinates
    pad = reach / height  # in units of frac
    reps = torch.ceil(pad) * periodic
    # image copies: every shift T with some atom inside the padded cell [-pad, 1 + pad)
    r0, r1, r2 = int(reps[0]), int(reps[1]), int(reps[2])
    grid = torch.cartesian_prod(torch.arange(-r0, r0 + 1, device=device), torch.arange(-r1, r1 + 1, device=device),
                                torch.arange(-r2, r2 + 1, device=device)).reshape(-1, 3).to(dtype)  # [M, 3]
    moved = frac.unsqueeze(0) + grid.unsqueeze(1)  # [M, N, 3]
    inside = ((moved >= -pad) & (moved < 1.0 + pad)) | ~pbc
    found = inside.all(dim=2).nonzero()
    image, atom = found[:, 0], found[:, 1]  # the extended point set, [P] each
    points = moved[image, atom]  # [P, 3] frac
    shift = grid.index_select(0, image)  # [P, 3]
    # bins at least `cutoff` thick along each direction (fewer and thicker when they would be many)
    lo = torch.where(pbc, -pad, frac.min(dim=0)[0])
    hi = torch.maximum(torch.where(pbc, 1.0 + pad, frac.max(dim=0)[0]), lo + pad)  # a flat extent gets one bin
    n_bins = torch.clamp(torch.floor((hi - lo) * height / reach), min=1.0)
    most = float(max(8 * points.shape[0], 27))
    total = float(torch.prod(n_bins))
    if total > most:
        n_bins = torch.clamp(torch.floor(n_bins * (most / total) ** (1.0 / 3.0)), min=1.0)
    width = (hi - lo) / n_bins
    nb = n_bins.to(torch.long)
    cell_of_point = _bin_of(points, lo, width, nb)
    cell_of_atom = _bin_of(frac, lo, width, nb)
    strides = torch.stack([nb[1] * nb[2], nb[2], torch.ones_like(nb[2])])
    bin_of_point = (cell_of_point * strides).sum(dim=1)
    order = torch.argsort(bin_of_point)
    counts = torch.bincount(bin_of_point, minlength=int(nb.prod()))
    starts = torch.cumsum(counts, 0) - counts
    # candidate pairs: each atom with every point of the 27 bins around its own
    offsets = torch.cartesian_prod(torch.arange(-1, 2, device=device), torch.arange(-1, 2, device=device),
                                   torch.arange(-1, 2, device=device))  # [27, 3]
    around = cell_of_atom.unsqueeze(1) + offsets.unsqueeze(0)  # [N, 27, 3]
    valid = ((around >= 0) & (around < nb)).all(dim=2)
    pairs = valid.nonzero()
    centre, which = pairs[:, 0], pairs[:, 1]
    bins = (around[centre, which] * strides).sum(dim=1)
    seg = counts.index_select(0, bins)
    centres = torch.repeat_interleave(centre, seg)
    first = torch.repeat_interleave(starts.index_select(0, bins) - (torch.cumsum(seg, 0) - seg), seg)
    other = order.index_select(0, torch.arange(centres.shape[0], device=device) + first)  # point index
    d = (points.index_select(0, other) - frac.index_select(0, centres)) @ basis
    keep = (d * d).sum(dim=1) < cutoff * cutoff
    self_pair = (atom.index_select(0, other) == centres) & (shift.index_select(0, other) == 0).all(dim=1)
    keep = keep & ~self_pair
    i, p = centres[keep], other[keep]
    j = atom.index_select(0, p)
    shifts = shift.index_select(0, p) - wrap.index_select(0, j) + wrap.index_select(0, i)
    return torch.stack([i, j]), shifts


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
