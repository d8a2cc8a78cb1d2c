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
