"""Splitting frames into train / validation / test sets. Whole configurations are held out,
never atoms of a configuration."""

from typing import Dict, List, Optional

import numpy as np

from mlip.errors import DataError


def random_split(
    n_frames: int, val_fraction: float, test_fraction: float = 0.0, seed: int = 0,
    source: Optional[str] = None,
) -> Dict[str, List[int]]:
    """Shuffle frame indices 0..n_frames-1 with ``seed`` and cut them into train/val/test.

    Each non-zero fraction gets at least one frame; the training set must not end up empty.
    """
    for name, frac in (("split.val_fraction", val_fraction), ("split.test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise DataError(f"{name}={frac} must lie in [0, 1)", source)
    order = np.random.default_rng(seed).permutation(n_frames).tolist()
    n_val = max(1, round(val_fraction * n_frames)) if val_fraction > 0 else 0
    n_test = max(1, round(test_fraction * n_frames)) if test_fraction > 0 else 0
    if n_frames - n_val - n_test < 1:
        raise DataError(
            f"empty training split: {n_frames} frame(s) cannot give {n_val} validation and {n_test} test "
            "frame(s) and leave any for training", source)
    return {
        "val": sorted(order[:n_val]),
        "test": sorted(order[n_val:n_val + n_test]),
        "train": sorted(order[n_val + n_test:]),
    }
