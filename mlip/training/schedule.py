"""Learning-rate schedules (``optimizer.scheduler.name``):

- ``cosine`` (the default): ``lr(p) = min_lr + (lr - min_lr) (1 + cos(pi p)) / 2`` per step, ``p``
  the fraction of the run done: the larger of steps / planned steps (``trainer.max_epochs``) and
  elapsed / allowed wall time (``trainer.max_time``). A wall-clock budget thus ends at ``min_lr``,
  however many epochs fit in it. (15-minute runs, docs/benchmarks.md: rMD17 ethanol about 15 %
  lower force error than ``plateau``; mlearn Si, Ge and Li the same within noise.)
- ``plateau``: ``ReduceLROnPlateau`` on ``val/loss`` (``factor``, ``patience``, ``min_lr``), stepped
  by ``PotentialModule.on_train_epoch_end`` before the epoch's checkpoints are written. It can
  drop the rate to its floor early when a small validation set's loss turns up.
"""

import math
from typing import Any, Dict

import lightning as L
import torch
from lightning.pytorch.callbacks import Timer

from mlip.errors import ConfigError

SCHEDULERS = ("plateau", "cosine")


def run_progress(trainer: "L.Trainer") -> float:
    """Fraction of the planned run done, in [0, 1] (see the module docstring)."""
    progress = 0.0
    total = trainer.estimated_stepping_batches
    if math.isfinite(total) and total > 0:
        progress = trainer.global_step / total
    for callback in getattr(trainer, "callbacks", []):
        if isinstance(callback, Timer):
            remaining = callback.time_remaining("train")
            if remaining is not None:
                elapsed = callback.time_elapsed("train")
                progress = max(progress, elapsed / max(elapsed + remaining, 1e-9))
    return min(max(progress, 0.0), 1.0)


def module_progress(module: "L.LightningModule") -> float:
    """``run_progress`` of the module's trainer; 0 for a module not attached to one (an optimiser
    built outside ``Trainer.fit``, as in tests)."""
    trainer = getattr(module, "_trainer", None)
    return run_progress(trainer) if trainer is not None else 0.0


def cosine_factor(progress: float, min_factor: float) -> float:
    """Multiplier of the initial learning rate at ``progress`` in [0, 1]: 1 at 0, ``min_factor`` at 1."""
    return min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, config: Dict[str, Any], lr: float,
                   module: "L.LightningModule") -> Dict[str, Any]:
    """The ``lr_scheduler`` entry of ``configure_optimizers`` for ``optimizer.scheduler`` ``config``."""
    name = str(config.get("name", "cosine"))
    min_lr = float(config.get("min_lr", 1e-5))
    sched: torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau
    if name == "plateau":
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=config.get("factor", 0.5), patience=config.get("patience", 10),
            min_lr=min_lr)
        return {"scheduler": sched, "monitor": "val/loss", "interval": "epoch"}
    if name == "cosine":
        min_factor = min(min_lr / lr, 1.0) if lr > 0 else 1.0
        sched = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda _: cosine_factor(module_progress(module), min_factor))
        return {"scheduler": sched, "interval": "step"}
    raise ConfigError(f"optimizer.scheduler.name={name!r} is not known; choose one of {', '.join(SCHEDULERS)}")
