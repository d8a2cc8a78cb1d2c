"""Collating single-frame graphs into one batch graph."""

from typing import Dict, List

import torch

from mlip import keys

# Per-atom and per-frame entries are concatenated; edges are concatenated with index offsets.
_PER_ATOM = (keys.POSITIONS, keys.ATOMIC_NUMBERS, keys.SPECIES, keys.FORCES)
_PER_FRAME = (
    keys.CELL, keys.PBC, keys.N_ATOMS, keys.CONFIG_TYPE, keys.ENERGY, keys.STRESS,
    keys.ENERGY_MASK, keys.FORCES_MASK, keys.STRESS_MASK,
)


def collate(graphs: List[Dict[str, torch.Tensor]], dtype: torch.dtype = torch.float32) -> Dict[str, torch.Tensor]:
    """Join graphs of single frames (as made by ``mlip.data.graph``) into one batch.

    Floating-point entries are cast to ``dtype``. Adds ``batch`` [N] (frame of each atom).
    """
    out: Dict[str, torch.Tensor] = {}
    for key in _PER_ATOM + _PER_FRAME:
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
