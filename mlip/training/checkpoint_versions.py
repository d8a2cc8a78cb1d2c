"""Checkpoint format versions and the functions that upgrade old checkpoints, in order.

Every ``.ckpt`` written by mlip carries ``mlip_checkpoint_version`` (an int, the layout of the
dict) and ``mlip_version`` (the package version that wrote it); ``stamp`` adds them when a
checkpoint is saved (``PotentialModule.on_save_checkpoint``). A checkpoint without the key is
version 1, the layout of mlip 0.1.0. ``upgrade`` brings a loaded checkpoint dict to
``CHECKPOINT_VERSION`` by applying ``UPGRADES`` one version at a time; a checkpoint newer than
this code raises ``CheckpointError`` (upgrade mlip).

Changing the layout (a renamed state-dict entry, a moved hyperparameter, ...): increase
``CHECKPOINT_VERSION``, append ``upgrade_vN_to_vN1(ckpt) -> ckpt`` to ``UPGRADES``, and store a
checkpoint written by the release before the change under ``tests/data/checkpoints/`` (see its
README) so the test proves old files still load, resume, export and predict the same energies.

Versions:

1. mlip 0.1.0: Lightning's checkpoint dict; ``hyper_parameters`` = ``PotentialModule``'s
   arguments (``model_config`` with the data-derived species, e0, scale, shift).
2. The same layout plus ``mlip_checkpoint_version`` and ``mlip_version``.
"""

from typing import Any, Callable, Dict, List

import mlip
from mlip.errors import CheckpointError

#: the version this code writes
CHECKPOINT_VERSION = 2
VERSION_KEY = "mlip_checkpoint_version"
WRITER_KEY = "mlip_version"

Checkpoint = Dict[str, Any]


def upgrade_v1_to_v2(ckpt: Checkpoint) -> Checkpoint:
    """Version 1 (no version keys) -> 2: the layout is unchanged; the writer is recorded as
    ``"0.1.0"`` (the only release that wrote version 1)."""
    ckpt.setdefault(WRITER_KEY, "0.1.0")
    ckpt[VERSION_KEY] = 2
    return ckpt


#: ``UPGRADES[k]`` takes a version ``k + 1`` checkpoint to version ``k + 2``
UPGRADES: List[Callable[[Checkpoint], Checkpoint]] = [upgrade_v1_to_v2]
assert len(UPGRADES) == CHECKPOINT_VERSION - 1


def checkpoint_version(ckpt: Checkpoint, path: Any = "checkpoint") -> int:
    """The format version of a checkpoint dict (1 without the key); ``CheckpointError`` if the
    entry is not a positive int."""
    version = ckpt.get(VERSION_KEY, 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{path}: corrupt or not an mlip checkpoint ({VERSION_KEY}={version!r} is not a "
                              "version number)")
    return version


def upgrade(ckpt: Checkpoint, path: Any = "checkpoint") -> Checkpoint:
    """``ckpt`` brought to ``CHECKPOINT_VERSION`` (in place, and returned). A checkpoint written by
    a newer mlip (a higher version) raises ``CheckpointError`` naming both versions."""
    version = checkpoint_version(ckpt, path)
    if version > CHECKPOINT_VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {version} (written by mlip {ckpt.get(WRITER_KEY, '?')}) is newer than "
            f"this mlip {mlip.__version__} reads (version {CHECKPOINT_VERSION}); upgrade mlip to load it")
    for step in UPGRADES[version - 1:]:
        ckpt = step(ckpt)
    return ckpt


def stamp(ckpt: Checkpoint) -> None:
    """Mark a checkpoint being written with this code's format version and mlip version."""
    ckpt[VERSION_KEY] = CHECKPOINT_VERSION
    ckpt[WRITER_KEY] = mlip.__version__
