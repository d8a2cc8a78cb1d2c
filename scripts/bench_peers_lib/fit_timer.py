"""A Lightning callback that records the training time and completed epochs of a run.

Used in NequIP's config (``_target_: fit_timer.FitTimer``; this folder on PYTHONPATH) so that
NequIP's time is measured the way mlip's ``fit_time_s`` and the MACE wrapper measure it: from
the start of the first training epoch (Lightning's ``on_train_start``, which is also when
``trainer.max_time`` starts counting) to the end of training. Imports only lightning.
"""

import json
import time

from lightning.pytorch.callbacks import Callback


class FitTimer(Callback):
    def __init__(self, out_file: str):
        self.out_file = out_file
        self.start = None

    def on_train_start(self, trainer, pl_module):
        self.start = time.perf_counter()
        model = getattr(pl_module, "model", pl_module)
        self.n_params = int(sum(p.numel() for p in model.parameters() if p.requires_grad))

    def on_train_end(self, trainer, pl_module):
        fit = time.perf_counter() - self.start
        with open(self.out_file, "w") as fh:
            json.dump({"fit_time_s": fit, "epochs": int(trainer.current_epoch), "steps": int(trainer.global_step),
                       "n_params": self.n_params}, fh)
