"""Callbacks of the trainer that are mlip's own."""

import logging
import sys
import time

import lightning as L

log = logging.getLogger("mlip")

#: (logged metric, label, format) shown in each epoch's line
EPOCH_FIELDS = (("train/loss", "train loss", "{:.4g}"), ("val/loss", "val loss", "{:.4g}"),
                ("val/energy_mae", "val E MAE", "{:.2f} meV/atom"), ("val/forces_mae", "F MAE", "{:.1f} meV/Å"),
                ("val/stress_mae", "S MAE", "{:.3f} GPa"))


def progress_bar_wanted(setting) -> bool:
    """``trainer.enable_progress_bar``: true / false, or null for "on a terminal only" (a batch
    job's log file then gets one line per epoch instead of a redrawn bar)."""
    if setting is None:
        return sys.stdout.isatty()
    return bool(setting)


class EpochLog(L.Callback):
    """One log line per finished epoch: epoch, losses, validation MAEs with units, learning rate and
    seconds per epoch. Used when there is no progress bar (SLURM logs stay small)."""

    def __init__(self):
        self._t0 = time.time()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._t0 = time.time()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or trainer.sanity_checking:
            return
        metrics = trainer.callback_metrics
        max_epochs = trainer.max_epochs if trainer.max_epochs and trainer.max_epochs > 0 else "?"
        parts = [f"epoch {trainer.current_epoch + 1}/{max_epochs}"]
        for key, label, fmt in EPOCH_FIELDS:
            if key in metrics:
                parts.append(f"{label} " + fmt.format(float(metrics[key])))
        if trainer.optimizers:
            parts.append(f"lr {trainer.optimizers[0].param_groups[0]['lr']:.3g}")
        parts.append(f"{time.time() - self._t0:.1f} s")
        log.info("  ".join(parts))


def checkpoint_callbacks(ckpt_dir) -> list:
    """``best.ckpt`` (lowest ``val/loss``) and ``last.ckpt`` (every epoch), in this order, so that
    ``last.ckpt`` records the best-checkpoint state of its own epoch. (``ModelCheckpoint(
    save_last=True)`` rewrites ``last.ckpt`` only in epochs that improve the monitored value.)"""
    from lightning.pytorch.callbacks import ModelCheckpoint

    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/loss", mode="min", save_top_k=1,
                           enable_version_counter=False)
    last = ModelCheckpoint(dirpath=ckpt_dir, filename="last", monitor=None, save_top_k=1,
                           enable_version_counter=False)
    return [best, last]
