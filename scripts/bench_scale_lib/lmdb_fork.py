"""Workaround, for these benchmarks only, of a bug of ``mlip.data.store.reader`` with loader
workers: the reader opens one LMDB environment per process (keyed by pid), but py-lmdb (3.0 here)
remembers the environments open in a process across ``fork``, so a DataLoader worker forked after
the main process opened the store (``FrameStore`` always does) fails with "The environment ... is
already open in this process". Closing the inherited environment in the child lets the worker
open its own, which is what the reader means to do. Remove once the reader does it itself.
``fork_site/sitecustomize.py`` does the same from interpreter start-up (for ``python train.py``).
"""

import os
import sys

_registered = False


def _close_inherited() -> None:
    reader = sys.modules.get("mlip.data.store.reader")
    if reader is None:
        return
    for key in [k for k in reader._ENVS if k[0] != os.getpid()]:
        reader._ENVS.pop(key).close()


def install() -> None:
    """Close inherited LMDB environments of the reader in every forked child (idempotent)."""
    global _registered
    if not _registered and hasattr(os, "register_at_fork"):
        os.register_at_fork(after_in_child=_close_inherited)
        _registered = True

