"""Splitting frames into train / validation / test sets and cross-validation folds. Whole
configurations are held out, never atoms of a configuration; with groups (``split.group_by``, an
``atoms.info`` key such as ``config_type`` or ``description``) whole groups are, so correlated
frames such as the snapshots of one AIMD trajectory never straddle two sets."""

from typing import Dict, Hashable, List, Optional, Sequence

import numpy as np

from mlip.errors import DataError


def group_labels(frames: Sequence, key: str, source: Optional[str] = None) -> List[str]:
    """The value of ``atoms.info[key]`` of each frame, as a string. ``config_type`` always exists
    (``default`` when the file has none); any other key missing from a frame is a ``DataError``."""
    labels = []
    for f in frames:
        if key == "config_type":
            labels.append(str(f.config_type))
        elif key in f.info:
            labels.append(str(f.info[key]))
        else:
            known = sorted(f.info)
            raise DataError(f"split.group_by={key}: this frame has no info key {key!r} (it has "
                            f"{', '.join(known) if known else 'none'})", f.source, f.index)
    return labels


def _groups(n_frames: int, groups: Optional[Sequence[Hashable]]) -> Dict[Hashable, List[int]]:
    """Group label -> frame indices (first-appearance order); each frame its own group without labels."""
    if groups is None:
        return {i: [i] for i in range(n_frames)}
    if len(groups) != n_frames:
        raise ValueError(f"{len(groups)} group labels for {n_frames} frames")
    out: Dict[Hashable, List[int]] = {}
    for i, g in enumerate(groups):
        out.setdefault(g, []).append(i)
    return out


def random_split(
    n_frames: int, val_fraction: float, test_fraction: float = 0.0, seed: int = 0,
    source: Optional[str] = None, groups: Optional[Sequence[Hashable]] = None,
) -> Dict[str, List[int]]:
    """Shuffle frame indices 0..n_frames-1 with ``seed`` and cut them into train/val/test.

    Each non-zero fraction gets at least one frame; the training set must not end up empty. With
    ``groups`` (one label per frame) whole groups are dealt out in a seeded random order: to test
    until it holds ``test_fraction`` of the frames, then to val, then the rest to train, so the
    fractions are met approximately (to within one group).
    """
    for name, frac in (("split.val_fraction", val_fraction), ("split.test_fraction", test_fraction)):
        if not 0.0 <= frac < 1.0:
            raise DataError(f"{name}={frac} must lie in [0, 1)", source)
    n_val = max(1, round(val_fraction * n_frames)) if val_fraction > 0 else 0
    n_test = max(1, round(test_fraction * n_frames)) if test_fraction > 0 else 0
    if groups is None:
        order = np.random.default_rng(seed).permutation(n_frames).tolist()
        if n_frames - n_val - n_test < 1:
            raise DataError(
                f"empty training split: {n_frames} frame(s) cannot give {n_val} validation and {n_test} test "
                "frame(s) and leave any for training", source)
        return {
            "val": sorted(order[:n_val]),
            "test": sorted(order[n_val:n_val + n_test]),
            "train": sorted(order[n_val + n_test:]),
        }
    members = list(_groups(n_frames, groups).values())
    out: Dict[str, List[int]] = {"val": [], "test": [], "train": []}
    for g in np.random.default_rng(seed).permutation(len(members)).tolist():
        name = "test" if len(out["test"]) < n_test else "val" if len(out["val"]) < n_val else "train"
        out[name] += members[g]
    if not out["train"]:
        raise DataError(
            f"empty training split: {len(members)} group(s) of split.group_by cannot give {n_val} validation "
            f"and {n_test} test frame(s) and leave any group for training", source)
    return {k: sorted(v) for k, v in out.items()}


def kfold_assignment(n_frames: int, k: int, seed: int = 0, groups: Optional[Sequence[Hashable]] = None,
                     source: Optional[str] = None) -> List[int]:
    """Fold (0..k-1) of each frame. Groups (each frame its own without ``groups``) are shuffled
    with ``seed``, sorted by size (largest first, shuffled order among equals) and each given to the
    fold with the fewest frames so far (lowest index on ties): balanced folds of whole groups."""
    if int(k) != k or k < 2:
        raise DataError(f"split.k={k} must be an integer >= 2", source)
    members = list(_groups(n_frames, groups).values())
    if len(members) < k:
        what = "group(s) of split.group_by" if groups is not None else "frame(s)"
        raise DataError(f"split.k={k} folds need at least {k} {what}; there are {len(members)}", source)
    order = np.random.default_rng(seed).permutation(len(members)).tolist()
    order.sort(key=lambda g: -len(members[g]))  # stable: shuffled order among equal sizes
    fold_of = [0] * n_frames
    sizes = [0] * int(k)
    for g in order:
        f = int(np.argmin(sizes))
        sizes[f] += len(members[g])
        for i in members[g]:
            fold_of[i] = f
    return fold_of


def kfold_split(n_frames: int, k: int, fold: int, val_fraction: float, seed: int = 0,
                groups: Optional[Sequence[Hashable]] = None, source: Optional[str] = None) -> Dict[str, List[int]]:
    """Split for cross-validation fold ``fold`` of ``k``: ``cv`` is the held-out fold (whole groups),
    ``val`` an inner validation set of ``val_fraction`` of the other folds' frames, the rest
    ``train``. See ``FrameDataModule`` for why the held-out fold is not the validation set.

    The inner validation set is drawn frame by frame, not by group: it only picks the best epoch
    and drives the learning-rate schedule, never enters the CV estimate, and with a few coarse
    groups (e.g. four config types) whole groups could not be set aside without losing a whole
    kind of structure from training."""
    if int(fold) != fold or not 0 <= fold < k:
        raise DataError(f"split.fold={fold} must be an integer in 0..{k - 1} (split.k={k})", source)
    fold_of = kfold_assignment(n_frames, k, seed, groups, source)
    held = [i for i in range(n_frames) if fold_of[i] == fold]
    rest = [i for i in range(n_frames) if fold_of[i] != fold]
    if not 0.0 < val_fraction < 1.0:
        raise DataError(f"split.val_fraction={val_fraction} must lie in (0, 1): an inner validation set is "
                        "carved from the training folds", source)
    n_val = max(1, round(val_fraction * len(rest)))
    inner = random_split(len(rest), n_val / len(rest), 0.0, seed, source)
    return {"cv": held, "val": sorted(rest[i] for i in inner["val"]), "train": sorted(rest[i] for i in inner["train"]),
            "test": [], "folds": fold_of}
