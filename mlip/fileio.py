"""Durable output files: atomic writes and the run-directory lock.

Every file mlip writes goes through ``atomic_path`` / ``atomic_open``: the data go to a temporary
file beside the target (``.<stem>.tmp-<pid><suffix>``, same directory so the rename stays on one
file system), are flushed to disk, and the temporary file is then renamed over the target with
``os.replace``. A kill, a crash or a full disk therefore leaves either the previous version or
the new one, never a truncated file. An ``OSError`` while writing (``ENOSPC``: disk full) becomes
``mlip.errors.WriteError`` naming the file; the temporary file is removed.

Writers should be handed an open Python file (``atomic_open``) where they accept one: then a
full disk surfaces as ``OSError(ENOSPC)``. (``torch.save`` to a *path* reports a full disk as an
obscure ``RuntimeError``, and ``torch.jit.save`` to a path aborts the process.)

``run_dir_lock(run_dir)`` keeps two live runs out of one run directory (see its docstring).

Bottom layer: imports nothing from mlip but ``mlip.errors``.
"""

import json
import os
import re
import socket
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Dict, Iterator, List, Optional, Union

from mlip.errors import RunDirInUseError, WriteError

PathLike = Union[str, "os.PathLike[str]"]
LOCK_NAME = ".mlip.lock"


def temporary_name(path: PathLike) -> Path:
    """The temporary file beside ``path`` used while writing it (keeps the suffix, which some
    writers read: ``savefig`` picks the format from it, AOTInductor packages end in ``.pt2``)."""
    path = Path(path)
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def remove_temporaries(directory: PathLike) -> List[Path]:
    """Delete the temporary files that killed writers left in ``directory`` (names as made by
    ``temporary_name``, of other processes); returns them. Call only while holding the
    directory's lock, when no other process writes there."""
    pattern = re.compile(r"^\..*\.tmp-(\d+)(\.[^.]*)?$")
    removed = []
    for path in Path(directory).glob(".*.tmp-*"):
        match = pattern.match(path.name)
        if match and int(match.group(1)) != os.getpid() and path.is_file():
            with suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on normal exit it is synced and renamed
    over ``path``. On any error the temporary file is removed and ``path`` is untouched; an
    ``OSError`` is raised as ``WriteError`` (disk full / write failed, naming ``path``)."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        _fsync(tmp)
        os.replace(tmp, path)
    except WriteError:
        raise
    except OSError as err:
        raise WriteError(path, err) from err
    finally:
        with suppress(OSError):
            tmp.unlink()


@contextmanager
def atomic_open(path: PathLike, mode: str = "w") -> Iterator[IO]:
    """``open(path, mode)`` on a temporary file that replaces ``path`` when the block ends
    without error (see ``atomic_path``). ``mode``: ``"w"`` (text, UTF-8) or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode {mode!r}; use 'w' or 'wb'")
    with atomic_path(path) as tmp:
        with (open(tmp, mode) if "b" in mode else open(tmp, mode, encoding="utf-8")) as fh:
            yield fh


def write_text(path: PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)


def write_json(path: PathLike, data: Any, **kwargs: Any) -> None:
    """Write ``data`` as JSON (``indent=1`` unless given) to ``path`` atomically."""
    kwargs.setdefault("indent", 1)
    write_text(path, json.dumps(data, **kwargs))


def save_torch(obj: Any, path: PathLike) -> None:
    """``torch.save(obj)`` to ``path`` atomically, through a Python file so that a full disk is
    reported as such."""
    import torch

    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


def save_figure(fig: Any, path: PathLike) -> None:
    """``fig.savefig`` (matplotlib) to ``path`` atomically, in the format of its suffix (png default)."""
    suffix = Path(path).suffix.lstrip(".").lower() or "png"
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, format=suffix)


# ---------------------------------------------------------------------------- run-directory lock
def _pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def is_launching_process() -> bool:
    """False in the extra ranks of a distributed run (Lightning's DDP subprocess launcher,
    torchrun and SLURM set ``LOCAL_RANK`` / ``RANK`` / ``SLURM_PROCID``): only rank 0 locks."""
    for name in ("LOCAL_RANK", "RANK", "SLURM_PROCID", "NODE_RANK"):
        value = os.environ.get(name, "0")
        if value.strip().isdigit() and int(value) != 0:
            return False
    return True


def _lock_owner() -> Dict[str, Any]:
    owner: Dict[str, Any] = {"host": socket.gethostname(), "pid": os.getpid()}
    if os.environ.get("SLURM_JOB_ID"):
        owner["slurm_job_id"] = os.environ["SLURM_JOB_ID"]
    return owner


def _read_lock(lock: Path) -> Optional[Dict[str, Any]]:
    """The owner recorded in ``lock``; None when it has vanished; {} when unreadable."""
    try:
        data = json.loads(lock.read_text())
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}


def _is_stale(owner: Dict[str, Any], me: Dict[str, Any]) -> bool:
    """A lock whose run is known to be dead: same host and the pid is gone, or the same SLURM
    job (a requeued job gets its old id back, after SLURM has killed the old run)."""
    if owner.get("slurm_job_id") and owner.get("slurm_job_id") == me.get("slurm_job_id"):
        return owner.get("host") != me["host"] or owner.get("pid") != me["pid"]
    if owner.get("host") == me["host"] and isinstance(owner.get("pid"), int):
        return not _pid_alive(owner["pid"])
    return False


def _try_create(lock: Path, me: Dict[str, Any]) -> bool:
    """Create ``lock`` holding ``me``, complete and atomically (write aside, then ``os.link``,
    which fails if the lock exists). True when created."""
    tmp = temporary_name(lock)
    try:
        tmp.write_text(json.dumps(me))
        os.link(tmp, lock)
        return True
    except FileExistsError:
        return False
    finally:
        with suppress(OSError):
            tmp.unlink()


def acquire_run_dir(run_dir: PathLike) -> Optional[Path]:
    """Lock ``run_dir`` for this process; returns the lock file (None in non-launching ranks).
    Takes over a stale lock; raises ``RunDirInUseError`` when another live run holds it."""
    if not is_launching_process():
        return None
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / LOCK_NAME
    me = _lock_owner()
    for _ in range(3):
        if _try_create(lock, me):
            return lock
        owner = _read_lock(lock)
        if owner is None:  # released meanwhile
            continue
        if not _is_stale(owner, me):
            raise RunDirInUseError(
                f"{run_dir}: run directory in use by another run (host {owner.get('host', '?')}, pid "
                f"{owner.get('pid', '?')}, lock file {lock}). Use another hydra.run.dir, or, if that run "
                "is no longer alive, delete the lock file.")
        with suppress(FileNotFoundError):
            lock.unlink()  # stale: its run is dead
    raise RunDirInUseError(f"{run_dir}: could not lock the run directory ({lock} keeps reappearing)")


def release_run_dir(lock: Optional[Path]) -> None:
    """Remove ``lock`` if this process still owns it."""
    if lock is None:
        return
    owner = _read_lock(lock)
    if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        with suppress(FileNotFoundError):
            lock.unlink()


@contextmanager
def run_dir_lock(run_dir: PathLike) -> Iterator[Optional[Path]]:
    """Hold the lock file ``<run_dir>/.mlip.lock`` (JSON: host, pid and SLURM job id) for the
    block, released on exit, also on error. A second run into a locked directory gets
    ``RunDirInUseError`` naming the directory, host and pid; a lock left by a dead run (same host
    and its pid gone, or the same requeued SLURM job) is taken over. Only the launching process
    locks: DDP ranks started by Lightning / torchrun / SLURM share the directory."""
    lock = acquire_run_dir(run_dir)
    try:
        yield lock
    finally:
        release_run_dir(lock)
