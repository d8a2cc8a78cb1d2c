"""glibc malloc settings that keep freed memory in the process, for CPU training and MD.

PyTorch's CPU allocator is plain ``malloc``/``free``: every intermediate of a training step is
allocated and freed once per step. glibc serves blocks above its mmap threshold (128 KiB at start,
raised on the fly) from fresh ``mmap`` pages and gives freed memory at the top of the heap back to
the kernel above its trim threshold, so the next step page-faults on the same few hundred MB
again: about 10,000 page faults per training step of the small equivariant model on 8 mlearn Si
frames. ``keep_freed_memory`` raises the mmap threshold to 32 MiB (glibc's largest), serves blocks
above it from the heap too (no ``mmap`` at all: MD of a few thousand atoms has per-edge tensors of
50-100 MB, which would otherwise be mapped and unmapped on every call), never gives freed memory
back (trim threshold -1: with 2 GiB, MD steps of 100,000 atoms, whose intermediates take several
GB, gave the excess back and faulted it in again each step, a quarter of the step's wall time)
and grows the heap 64 MiB at a time, so steady-state steps reuse memory the process already
holds: training steps 7-19 % faster on one CPU thread (small on Si, medium on ethanol), and the
TorchScript equivariant model in LAMMPS 1.4x faster at 8,000 atoms (``docs/benchmarks.md``). Peak
memory rises with the larger blocks kept in the heap (12-24 % in LAMMPS at 8,000-97,336 atoms);
memory freed after the peak is kept until the process ends.

This is what ``LD_PRELOAD`` of jemalloc or tcmalloc does for PyTorch, without a dependency.
Linux with glibc only (elsewhere nothing happens); ``MLIP_MALLOC_TUNING=0`` turns it off.
"""

import ctypes
import ctypes.util
import os
import sys

# mallopt parameters (glibc malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4

#: the settings: (parameter, value); values fit a C int
SETTINGS = ((_M_MMAP_THRESHOLD, 32 << 20), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, -1),
            (_M_TOP_PAD, 64 << 20))


def keep_freed_memory() -> bool:
    """Apply ``SETTINGS`` with glibc's ``mallopt``; True when all were accepted. Does nothing (False)
    off Linux, without glibc, or with the environment variable ``MLIP_MALLOC_TUNING=0``."""
    if os.environ.get("MLIP_MALLOC_TUNING", "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
        glibc = hasattr(libc, "gnu_get_libc_version")  # musl has mallopt, but not these settings
    except (OSError, AttributeError):
        return False
    if not glibc:
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in SETTINGS)
