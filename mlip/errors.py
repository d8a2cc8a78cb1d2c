"""Errors for bad input: data (naming file, frame and problem) and configuration (naming the key)."""

from typing import Optional


class DataError(ValueError):
    """Bad input data. ``str(err)`` reads ``<file>, frame <i>: <problem>``."""

    def __init__(self, problem: str, path: Optional[str] = None, frame: Optional[int] = None):
        self.path = path
        self.frame = frame
        self.problem = problem
        where = []
        if path is not None:
            where.append(str(path))
        if frame is not None:
            where.append(f"frame {frame}")
        super().__init__((", ".join(where) + ": " if where else "") + problem)


class ConfigError(ValueError):
    """A configuration value that cannot work; the message names the config key at fault."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: truncated, not a torch file, or not written by mlip.
    ``str(err)`` reads ``<path>: <problem>``."""


class RunDirInUseError(RuntimeError):
    """The run directory is locked by another live run; the message names the directory, host and pid."""


class WriteError(OSError):
    """An output file could not be written (disk full, quota, permissions); the previous version
    of the file, if any, is left whole. ``str(err)`` reads ``<path>: <problem>``."""

    def __init__(self, path, cause: OSError):
        import errno

        full = getattr(cause, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        problem = ("disk full (no space left on device)" if full
                   else f"write failed ({getattr(cause, 'strerror', None) or cause})")
        self.message = (f"{path}: {problem}; the previous version of the file, if any, is unchanged. "
                        + ("Free disk space and run again." if full else "Check the path and run again."))
        self.disk_full = full
        super().__init__(getattr(cause, "errno", None), self.message, str(path))

    def __str__(self) -> str:
        return self.message


#: the errors the command-line tools report as ``mlip: error: <message>`` (exit 1, no traceback)
class RunInterrupted(RuntimeError):
    """Training stopped by a signal (SIGTERM from a scheduler, Ctrl-C); ``exit_code`` 143 or 130."""

    def __init__(self, message: str, exit_code: int):
        self.exit_code = exit_code
        super().__init__(message)


USER_ERRORS = (DataError, ConfigError, CheckpointError, RunDirInUseError, WriteError)
