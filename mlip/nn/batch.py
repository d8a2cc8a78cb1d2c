"""Collating single-frame graphs into one batch graph."""

from typing import Dict, List, Tuple

import torch

from mlip import keys, targets

# Per-atom and per-frame entries are concatenated; edges are concatenated with index offsets.
_PER_ATOM = (keys.POSITIONS, keys.ATOMIC_NUMBERS, keys.SPECIES)
_PER_FRAME = (keys.CELL, keys.PBC, keys.N_ATOMS, keys.CONFIG_TYPE)


def _entries() -> Tuple[str, ...]:
    """Keys concatenated along their first axis: inputs, then each registered kind's label and mask."""
    labels = targets.all_targets()
    return (_PER_ATOM + tuple(t.label_key for t in labels if t.per_atom) + _PER_FRAME
            + tuple(t.label_key for t in labels if not t.per_atom) + tuple(t.mask_key for t in labels))


def collate(graphs: List[Dict[str, torch.Tensor]], dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
    """Join graphs of single frames (as made by ``mlip.data.graph``) into one batch.

    Floating-point entries are cast to ``dtype``. Adds ``batch`` [N] (frame of each atom). Labels
    and masks of every kind registered in ``mlip.targets`` are joined (per atom or per frame).
    """
    out: Dict[str, torch.Tensor] = {}
    for key in _entries():
        if key in graphs[0]:
            out[key] = torch.cat([g[key] for g in graphs])
    offsets = []
    total = 0
    for g in graphs:
        offsets.append(total)
        total += int(g[keys.N_ATOMS][0])
    out[keys.EDGE_INDEX] = torch.cat([g[keys.EDGE_INDEX] + off for g, off in zip(graphs, offsets)], dim=1)
    out[keys.CELL_SHIFTS] = torch.cat([g[keys.CELL_SHIFTS] for g in graphs])
    out[keys.BATCH] = torch.repeat_interleave(torch.arange(len(graphs)), out[keys.N_ATOMS])
    for key, value in out.items():
        if value.is_floating_point():
            out[key] = value.to(dtype)
    return out
