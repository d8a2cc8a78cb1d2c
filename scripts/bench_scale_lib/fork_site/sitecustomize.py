"""Put this folder on PYTHONPATH to install ``bench_scale_lib.lmdb_fork`` in a process at start-up,
before it forks any DataLoader worker (``python train.py`` builds its first loader before the
callbacks exist). Used by ``bench_scale_lib.runs.train`` for runs with loader workers."""

import os
import sys


def _close_inherited() -> None:
    reader = sys.modules.get("mlip.data.store.reader")
    if reader is None:
        return
    for key in [k for k in reader._ENVS if k[0] != os.getpid()]:
        reader._ENVS.pop(key).close()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_inherited)
