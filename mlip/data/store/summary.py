"""``FrameSummary``: what is known about a frame of an on-disk dataset without reading it."""

from dataclasses import dataclass
from typing import Dict, FrozenSet, Optional, Tuple

import numpy as np


@dataclass(eq=False)
class FrameSummary:
    """The metadata of one stored frame, enough to split, check, fit E0 and compute statistics
    without loading positions or forces. It has the attributes of ``mlip.data.io.Frame`` that
    those steps use (``composition``, ``energy``, ``kinds``, ``n_atoms``, ``pbc``, ``config_type``,
    ``info``, ``source``, ``index``, ``is_isolated_atom``, ``force_sq_sum``, ``force_count``,
    ``label_names``), so they take either.

    ``source``/``index``: the original file and the frame's position in it (for messages);
    ``source_id`` with ``index`` is the frame's key in the store. ``n_edges``: directed edges within
    the store's cutoff (``FrameStore.cutoff``, Å)."""

    __slots__ = ("source", "index", "source_id", "n_atoms", "composition", "energy", "kinds", "pbc",
                 "is_isolated_atom", "config_type", "info", "n_edges", "force_sq_sum", "force_count",
                 "label_names")
    source: str
    index: int
    source_id: int
    n_atoms: int
    composition: Dict[int, int]
    energy: Optional[float]  # eV
    kinds: FrozenSet[str]
    pbc: np.ndarray  # [3] bool
    is_isolated_atom: bool
    config_type: str
    info: Dict
    n_edges: int
    force_sq_sum: float  # eV²/Å²
    force_count: int
    label_names: Tuple[str, ...]
