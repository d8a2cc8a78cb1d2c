"""Edges as a padded table of neighbour slots per centre atom (for batched per-atom products)."""

from typing import Tuple

import torch


def neighbour_slots(centre: torch.Tensor, n_atoms: int, sh: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """Place each edge in a table of K = max(2, most neighbours of any atom) slots per centre atom.

    ``centre`` [E] (centre atom of each edge), ``sh`` [E, D] (any per-edge rows, here the
    spherical harmonics). Returns ``slot`` [E] (index into the flattened [N * K] table; edges keep
    their order, which need not be sorted) and ``sh`` copied into a zero-padded [N, K, D] table."""
    e = centre.shape[0]
    # (not bincount: its length is data-dependent under torch.export, and the traced graph would
    # then refuse a single atom)
    counts = torch.zeros(n_atoms, dtype=centre.dtype, device=centre.device)
    counts = counts.index_add_(0, centre, torch.ones_like(centre))
    # at least 2 slots: torch.export would otherwise specialise the traced graph to K >= 2 (a size
    # of 1 broadcasts differently) and refuse structures where no atom has two neighbours
    if torch.jit.is_scripting():
        k = int(counts.max().clamp_min(2))
    else:  # under torch.export K is a data-dependent size (an unbacked symbol), not a constant
        k = counts.max().clamp_min(2).item()
        torch._check(k >= 2)
    order = torch.sort(centre, stable=True)[1]
    first = torch.cumsum(counts, 0) - counts
    sorted_centre = centre.index_select(0, order)
    rank = torch.arange(e, device=centre.device) - first.index_select(0, sorted_centre)
    slot = torch.empty_like(centre).index_copy(0, order, sorted_centre * k + rank)
    return slot, to_slots(sh, slot, n_atoms, k)


def to_slots(rows: torch.Tensor, slot: torch.Tensor, n_atoms: int, k: int) -> torch.Tensor:
    """Per-edge ``rows`` [E, F] placed in their slots: a zero-padded [N, K, F] table."""
    table = torch.zeros(n_atoms * k, rows.shape[1], dtype=rows.dtype, device=rows.device)
    # in place: the fresh zeros need no copy (autograd differentiates the rows through it)
    return table.index_copy_(0, slot, rows).view(n_atoms, k, rows.shape[1])


def slot_products(rows: torch.Tensor, slot: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """sum over each centre's neighbours of rows[e] (outer) table-row[e]: [N, F, D] from per-edge
    ``rows`` [E, F] and a slot ``table`` [N, K, D] of ``neighbour_slots``, as one batched matrix
    product [F, K] @ [K, D] per centre (several times fewer memory passes than forming the
    [E, F, D] edge products and scattering them)."""
    n_atoms, k = table.shape[0], table.shape[1]
    return torch.bmm(to_slots(rows, slot, n_atoms, k).transpose(1, 2), table)
