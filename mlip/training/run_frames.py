"""The frames of a finished run's splits, rebuilt from its ``config.yaml`` and ``split.json``
(indices into the training data with isolated atoms removed, as ``FrameDataModule`` numbers them),
for analyses, committees and fine-tuning."""

import json
from pathlib import Path
from typing import Any, List, Optional, Tuple

from mlip.data.store import read_any as read_frames
from mlip.errors import ConfigError, DataError


def resolve_source(source: str, what: str = "") -> Tuple[Path, Optional[Path]]:
    """(checkpoint, run directory or None) of a run directory (its ``checkpoints/best.ckpt``) or a
    checkpoint path; ``what`` (e.g. ``finetune.from=``) prefixes the errors."""
    path = Path(str(source))
    if path.is_dir():
        ckpt = path / "checkpoints" / "best.ckpt"
        if not ckpt.exists():
            raise ConfigError(f"{what}{source}: no checkpoints/best.ckpt in this run directory")
        return ckpt, path
    if not path.exists():
        raise ConfigError(f"{what}{source}: no such run directory or checkpoint")
    for run_dir in (path.parent, path.parent.parent):  # <run>/checkpoints/x.ckpt or <run>/x.ckpt
        if (run_dir / "config.yaml").exists():
            return path, run_dir
    return path, None


def run_config(run_dir: Path):
    """The run's resolved ``config.yaml`` (an OmegaConf node)."""
    from omegaconf import OmegaConf

    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise ConfigError(f"{run_dir}: no config.yaml (not a finished mlip run directory)")
    return OmegaConf.load(path)


def frames_of_split(run_dir: Path, split: str) -> List[Any]:
    """``split_frames`` with the run's own label keys and format."""
    from mlip.data.io import LabelKeys

    cfg = run_config(run_dir)
    return split_frames(Path(run_dir), cfg, split, LabelKeys(**dict(cfg.data["keys"])), cfg.data.get("format"))


def split_frames(run_dir: Path, cfg, split: str, label_keys, fmt) -> List[Any]:
    """Frames of a split of the run, rebuilt from ``split.json`` (indices into the training file
    with isolated atoms removed, as ``FrameDataModule`` numbers them)."""
    split_file = run_dir / "split.json"
    if not split_file.exists():
        raise ConfigError(f"{run_dir}: no split.json; give the frames with --data FILE")
    info = json.loads(split_file.read_text())
    own_file = info.get(f"{split}_file") if split != "train" else None
    if own_file:
        return [f for f in read_frames(own_file, label_keys, format=fmt) if not f.is_isolated_atom]
    if split not in info:
        raise ConfigError(f"{split_file}: no {split!r} split")
    train_file = info.get("train_file") or cfg.data.train
    frames = [f for f in read_frames(train_file, label_keys, format=fmt) if not f.is_isolated_atom]
    indices = info[split]
    if indices and max(indices) >= len(frames):
        raise DataError(f"split.json lists frame {max(indices)} but the file has {len(frames)} "
                        "(non-isolated) frames: has the file changed since training?", train_file)
    return [frames[i] for i in indices]
