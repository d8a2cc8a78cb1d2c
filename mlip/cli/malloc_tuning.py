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

``restart_with_huge_pages`` (the command-line entry points, first thing) re-executes the process
once with glibc's tunable ``glibc.malloc.hugetlb=1``: malloc then advises transparent huge pages
(2 MiB) for the memory it takes from the kernel, so the per-edge tensors that every step streams
through cost a TLB entry per 2 MiB instead of per 4 KiB. Measured on one CPU thread
(``docs/benchmarks.md``): equivariant training steps 1.08-1.12x faster (ethanol ``medium``, Si
``small``; whole epochs 1.03x and 1.08x) and MD with ``model.pt2`` 1.05-1.13x at 1,000-27,000
atoms, for 1 % more peak memory in training. A tunable is read when the process starts, hence
the restart; engines started otherwise (LAMMPS, a Python script) take the setting from the
environment: ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1 lmp -in in.lammps``.

Linux with glibc only (elsewhere nothing happens); ``MLIP_MALLOC_TUNING=0`` turns both off.
"""

import ctypes
import ctypes.util
import os
import sys
from typing import Dict, Mapping, Optional, Tuple

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


#: glibc's malloc tunable (glibc >= 2.35) that advises transparent huge pages for its heap
HUGE_PAGES_TUNABLE = "glibc.malloc.hugetlb=1"
#: the kernel's transparent-huge-page mode ("always [madvise] never": the bracketed one is in force)
THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _glibc_version() -> Optional[Tuple[int, int]]:
    """(major, minor) of the running glibc, or None (not glibc, or not Linux)."""
    try:
        name, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()  # e.g. "glibc 2.36"
        major, minor = version.split(".")[:2]
        return (int(major), int(minor)) if name == "glibc" else None
    except (AttributeError, OSError, ValueError):
        return None


def huge_pages_possible() -> bool:
    """Whether ``glibc.malloc.hugetlb=1`` can take effect here: Linux, glibc >= 2.35 and the
    kernel's transparent huge pages not ``never``."""
    if not sys.platform.startswith("linux") or (_glibc_version() or (0, 0)) < (2, 35):
        return False
    try:
        with open(THP_MODE_FILE) as fh:
            return "[never]" not in fh.read()
    except OSError:
        return False


def with_huge_pages(env: Mapping[str, str]) -> Dict[str, str]:
    """A copy of the environment ``env`` with ``HUGE_PAGES_TUNABLE`` appended to its
    ``GLIBC_TUNABLES`` (after the user's own), where it can take effect and is not set already."""
    out = dict(env)
    current = out.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" not in current and huge_pages_possible():
        out["GLIBC_TUNABLES"] = f"{current}:{HUGE_PAGES_TUNABLE}" if current else HUGE_PAGES_TUNABLE
    return out


def restart_with_huge_pages() -> None:
    """Re-execute this process once, with the same interpreter and arguments, with
    ``HUGE_PAGES_TUNABLE`` added to ``GLIBC_TUNABLES``, where it can take effect and is not set
    already (by an earlier restart or by the user). Call it first thing in a command-line entry
    point, before any output, threads or child processes; never from library code. Nothing
    happens with ``MLIP_MALLOC_TUNING=0``, or if the restart fails (the run goes on as it is)."""
    if os.environ.get("MLIP_MALLOC_TUNING", "1").strip() == "0":
        return
    if not sys.argv or sys.argv[0] in ("", "-"):  # interactive, or a script read from stdin (consumed)
        return
    env = with_huge_pages(os.environ)
    if env.get("GLIBC_TUNABLES") == os.environ.get("GLIBC_TUNABLES"):  # set already, or no effect here
        return
    argv = [sys.executable] + list(getattr(sys, "orig_argv", [sys.executable] + sys.argv)[1:])
    try:
        sys.stdout.flush()
        sys.stderr.flush()
        os.execve(sys.executable, argv, env)
    except OSError:
        return
