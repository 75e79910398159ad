"""The errors ftkit raises on purpose: each says what was wrong and how to fix it."""

from __future__ import annotations


class FtkitError(Exception):
    """Base of every error that is the user's to fix; surfaces print its message, not a traceback."""


class ConfigError(FtkitError, ValueError):
    """A configuration key or value is wrong."""


class DataError(FtkitError, ValueError):
    """Input data is malformed; names the file and line when there is one."""

    def __init__(self, message: str, path: str | None = None, line: int | None = None):
        self.path, self.line, self.reason = path, line, message
        where = ""
        if path is not None:
            where = f"{path}:{line}: " if line is not None else f"{path}: "
        super().__init__(where + message)


class RunError(FtkitError):
    """A run cannot be found, started, stopped or resumed as asked."""
