"""Reading and writing Lightning checkpoints.

``AtomicCheckpointIO`` writes each checkpoint to a temporary file beside the target and renames
it over (``mlip.fileio``), so a kill or a full disk never leaves a truncated ``last.ckpt`` or
``best.ckpt``; a full disk is reported as ``WriteError`` naming the file. ``load_checkpoint`` is
the one reader of ``.ckpt`` files (resume, export, calculator, identifiability, the final
evaluation; ``checkpoint_load`` builds the model from it): a truncated, foreign or non-torch file
raises ``CheckpointError`` saying so, and an older format is upgraded
(``checkpoint_versions.upgrade``; a newer one than this code knows is refused).
"""

from pathlib import Path
from typing import Any, Dict, Optional

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from mlip.errors import CheckpointError
from mlip.fileio import atomic_open
from mlip.training.checkpoint_versions import upgrade

#: keys every mlip checkpoint has; resuming training needs the training state as well
MODEL_KEYS = ("state_dict", "hyper_parameters")
TRAINING_KEYS = ("epoch", "global_step", "loops", "optimizer_states", "lr_schedulers")
HPARAM_KEYS = ("model_config", "loss_config", "optimizer_config")


def _corrupt(path, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: corrupt or not an mlip checkpoint ({why}); use another checkpoint "
                           "(e.g. checkpoints/best.ckpt of the run) or train afresh")


def _short_reason(err: Exception) -> str:
    """The first sentence of ``err``'s message if it is plain text, else its type name."""
    text = (str(err).strip().splitlines() or [""])[0].split(". ")[0][:100]
    return text if text and text.isascii() and text.isprintable() else type(err).__name__


def load_checkpoint(path, map_location: Any = "cpu", for_resume: bool = False) -> Dict[str, Any]:
    """The checkpoint dict of an mlip ``.ckpt`` file, upgraded to the current format version and
    checked: ``CheckpointError`` for a file that is truncated, not a torch file, not written by
    mlip's trainer (``for_resume``: also lacking the optimiser / loop state needed to continue
    training) or written by a newer mlip; ``FileNotFoundError`` if absent. Tensors keep their
    saved dtype."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(str(path), map_location=map_location, weights_only=False)
    except Exception as err:  # truncated zip, random bytes, foreign pickle: all unreadable
        raise _corrupt(path, f"cannot be read: {_short_reason(err)}") from err
    if not isinstance(ckpt, dict):
        raise _corrupt(path, f"holds a {type(ckpt).__name__}, not a training checkpoint")
    ckpt = upgrade(ckpt, path)
    missing = [k for k in MODEL_KEYS + (TRAINING_KEYS if for_resume else ()) if k not in ckpt]
    hparams = ckpt.get("hyper_parameters")
    if not missing and not (isinstance(hparams, dict) and all(k in hparams for k in HPARAM_KEYS)):
        missing = [f"hyper_parameters.{k}" for k in HPARAM_KEYS if not isinstance(hparams, dict) or k not in hparams]
    if missing:
        raise _corrupt(path, "no " + ", ".join(missing))
    return ckpt


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint IO with atomic writes and checked reads."""

    def save_checkpoint(self, checkpoint: Dict[str, Any], path, storage_options: Optional[Any] = None) -> None:
        with atomic_open(path, "wb") as fh:
            torch.save(checkpoint, fh)

    def load_checkpoint(self, path, map_location: Optional[Any] = None, weights_only: Optional[bool] = None
                        ) -> Dict[str, Any]:
        return load_checkpoint(path, map_location="cpu" if map_location is None else map_location, for_resume=True)
