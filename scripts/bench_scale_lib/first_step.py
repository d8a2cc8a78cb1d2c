"""``FirstStepTimer``: a Lightning callback that records when the first training batch starts and
how long the following steps take, written as JSON (one file per rank).

    python train.py ... +callbacks.first_step._target_=bench_scale_lib.first_step.FirstStepTimer \
        +callbacks.first_step.out_file=/tmp/first_step.json      # scripts/ on PYTHONPATH

Times are ``time.time()``; the launch time is the environment variable ``MLIP_BENCH_T0`` (set by
the launcher just before starting the process) and the process start time comes from
``/proc/self/stat``. Memory (``/proc/self/status``) is recorded at the first step and at the end.
``cpu_step_s``: the process's CPU seconds per step (this process only: loader workers not
included), less sensitive than wall time to other jobs on a shared machine. Imports only lightning.
"""

import json
import os
import time

from lightning.pytorch.callbacks import Callback


def process_start_time() -> float:
    """This process's start (seconds since the epoch) from /proc/self/stat and the boot time."""
    try:
        with open("/proc/self/stat") as fh:
            stat = fh.read()
        ticks = int(stat[stat.rindex(")") + 2:].split()[19])
        with open("/proc/stat") as fh:
            btime = next(int(line.split()[1]) for line in fh if line.startswith("btime"))
        return btime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, StopIteration):
        return float("nan")


def memory() -> dict:
    out = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


class FirstStepTimer(Callback):
    def __init__(self, out_file: str, warmup: int = 3):
        self.out_file = out_file
        self.warmup = warmup
        self.first = None
        self.cpu_first = None
        self.fit_start = None
        self.train_start = None
        self.ends = []
        self.cpu_ends = []
        self.mem_first = {}

    def on_fit_start(self, trainer, pl_module):
        self.fit_start = time.time()

    def on_train_start(self, trainer, pl_module):
        self.train_start = time.time()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first is None:
            self.first = time.time()
            self.cpu_first = time.process_time()
            self.mem_first = memory()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.ends.append(time.time())
        self.cpu_ends.append(time.process_time())

    def on_train_end(self, trainer, pl_module):
        launch = float(os.environ.get("MLIP_BENCH_T0", "nan"))
        start = process_start_time()
        timed = self.ends[self.warmup:]
        steps_per_s = (len(timed) - 1) / (timed[-1] - timed[0]) if len(timed) > 1 else None
        cpu = self.cpu_ends[self.warmup:]
        cpu_step_s = (cpu[-1] - cpu[0]) / (len(cpu) - 1) if len(cpu) > 1 else None
        data = {"rank": trainer.global_rank, "world_size": trainer.world_size, "launch": launch,
                "process_start": start, "fit_start": self.fit_start, "train_start": self.train_start,
                "first_step": self.first, "first_step_since_launch": self.first - launch,
                "first_step_since_process_start": self.first - start, "steps": len(self.ends),
                "steps_per_s": steps_per_s, "step_s": 1 / steps_per_s if steps_per_s else None,
                "cpu_step_s": cpu_step_s, "cpu_first_step": self.cpu_first,
                "memory_first_step": self.mem_first, "memory_end": memory()}
        root, ext = os.path.splitext(self.out_file)
        path = f"{root}.rank{trainer.global_rank}{ext}"
        with open(path, "w") as fh:
            json.dump(data, fh, indent=1)
