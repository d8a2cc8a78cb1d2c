"""Edge vectors, cell volumes and reverse-edge pairs from a batch; the overlapping-atoms guard of inference."""

from typing import Dict, Optional, Tuple

import torch

from mlip import keys


def edge_vectors(data: Dict[str, torch.Tensor]) -> torch.Tensor:
    """r_ij = r_j - r_i + S_ij @ cell, [E, 3] in Å, differentiable in positions and cell. A batch
    without ``keys.CELL_SHIFTS`` has its periodic images as atoms of their own (an engine's ghost
    atoms): r_ij = r_j - r_i."""
    pos = data[keys.POSITIONS]
    i = data[keys.EDGE_INDEX][0]
    j = data[keys.EDGE_INDEX][1]
    if keys.CELL_SHIFTS not in data:
        return pos.index_select(0, j) - pos.index_select(0, i)
    # index_select, not x[idx]: its backward is a fast index_add_ rather than index_put_
    cell = data[keys.CELL].index_select(0, data[keys.BATCH].index_select(0, i))  # [E, 3, 3]
    shift = torch.bmm(data[keys.CELL_SHIFTS].unsqueeze(1), cell).squeeze(1)
    return pos.index_select(0, j) - pos.index_select(0, i) + shift


def cell_volume(cell: torch.Tensor) -> torch.Tensor:
    """|det(cell)| [B] in Å³ for ``cell`` [B, 3, 3]; 0 for molecules (zero cell)."""
    return torch.linalg.det(cell).abs()


#: atoms closer than this (Å) are refused as overlapping by the exported models and the ASE calculator
#: (two atoms at one position give NaN; no training set holds pairs this close)
MIN_DISTANCE = 0.1


def closest_pair(vectors: torch.Tensor, edge_index: torch.Tensor) -> Tuple[int, int, float]:
    """``(i, j, |r_ij|)`` of the shortest edge of ``vectors`` [E, 3] (``edge_vectors``); ``(-1, -1,
    inf)`` without edges. TorchScript-compatible."""
    if vectors.shape[0] == 0:
        return -1, -1, float("inf")
    lengths = torch.linalg.norm(vectors.detach(), dim=1)
    k = int(torch.argmin(lengths))
    return int(edge_index[0, k]), int(edge_index[1, k]), float(lengths[k])


def _fixed4(x: float) -> str:
    """``x`` >= 0 with four decimals (TorchScript has no format specifications)."""
    n = int(round(x * 10000.0))
    return str(n // 10000) + "." + str(n % 10000).zfill(4)


def overlap_message(i: int, j: int, distance: float, min_distance: float) -> str:
    """The error for atoms ``i`` and ``j`` closer than ``min_distance``. TorchScript-compatible."""
    threshold = _fixed4(min_distance).rstrip("0").rstrip(".")
    return ("atoms " + str(i) + " and " + str(j) + " are " + _fixed4(distance) + " Å apart (closer than "
            + threshold + " Å): overlapping atoms, where the model gives no meaningful energy; "
            + "check the structure (min_distance sets the threshold, 0 turns the check off)")


def reversed_orientation(edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> torch.Tensor:
    """[E] bool: whether each edge i -> j (integer lattice shift S, ``cell_shifts`` [E, 3]) is the
    non-canonical one of its pair. Canonical: i < j, or i == j with S lexicographically positive;
    of an edge and its reverse exactly one is canonical."""
    i, j = edge_index[0], edge_index[1]
    s = cell_shifts
    negative = (s[:, 0] < 0) | ((s[:, 0] == 0) & ((s[:, 1] < 0) | ((s[:, 1] == 0) & (s[:, 2] < 0))))
    return (i > j) | ((i == j) & negative)


def half_edge_list(edge_index: torch.Tensor,
                   cell_shifts: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The canonical edge of each pair (``reversed_orientation``) of a full neighbour list, each pair
    once: ``(edge_index [2, E/2], cell_shifts [E/2, 3])``, the input of a ``paired`` graph, which
    appends the reverses itself (``keys.PAIRED_EDGES``). None unless exactly half of the edges are
    canonical (a list that is not a full one, or no edges): then evaluate the full list as it is."""
    n_edges = edge_index.shape[1]
    if n_edges == 0 or n_edges % 2:
        return None
    keep = ~reversed_orientation(edge_index, cell_shifts.round())
    if int(keep.sum()) * 2 != n_edges:
        return None
    return edge_index[:, keep], cell_shifts[keep]


def doubled_edge_list(edge_index: torch.Tensor, cell_shifts: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The full list of a ``half_edge_list``: its G edges, then their reverses (j -> i, shift -S), as
    ``keys.PAIRED_EDGES`` describes: ``(edge_index [2, 2G], cell_shifts [2G, 3])``. TorchScript-compatible."""
    return torch.cat([edge_index, edge_index.flip(0)], dim=1), torch.cat([cell_shifts, -cell_shifts])


def reverse_pair_groups(edge_index: torch.Tensor,
                        cell_shifts: torch.Tensor) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """Edges i -> j (shift S) and j -> i (shift -S) are one pair: the same distance, bit for bit
    (r_ji = -r_ij exactly in floating point). Returns ``(first, group)``: ``group`` [E] numbers each
    edge's pair (both directions share it; an edge without its reverse, e.g. to an engine's ghost
    atom, is a pair of its own) and ``first`` [G] is one edge of each pair, so a function of the
    distance can be evaluated on G <= E edges and gathered back. ``edge_index`` [2, E], ``cell_shifts``
    [E, 3] (integer lattice translations). None when the integer key would overflow (then evaluate on
    every edge)."""
    n_edges = edge_index.shape[1]
    if n_edges == 0:
        return None
    i, j = edge_index[0], edge_index[1]
    s = cell_shifts.round().to(torch.long)
    flip = reversed_orientation(edge_index, s)
    a = torch.where(flip, j, i)
    b = torch.where(flip, i, j)
    s = torch.where(flip.unsqueeze(1), -s, s)
    span = int(s.abs().max()) * 2 + 1
    n = int(edge_index.max()) + 1
    if float(n) * n * span ** 3 >= 2.0 ** 62:
        return None
    s = s + span // 2
    key = (a * n + b) * span ** 3 + (s[:, 0] * span + s[:, 1]) * span + s[:, 2]
    keys_unique, group = torch.unique(key, return_inverse=True)
    first = torch.zeros(keys_unique.shape[0], dtype=torch.long, device=key.device)
    first.scatter_(0, group, torch.arange(n_edges, device=key.device))
    return first, group
