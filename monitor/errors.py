"""One error hierarchy, translated once at the CLI edge into a message and an exit status.

Nothing here imports anything of ours.
"""

from __future__ import annotations


class MonitorError(Exception):
    """A failure a user can act on. `str(err)` is the one-line message; `exit_code` the status."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(MonitorError):
    """The configuration is invalid. Carries every problem, each with its key path."""

    exit_code = 78  # EX_CONFIG from sysexits.h

    def __init__(self, message: str, problems: list[str] | None = None, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.problems = problems or []


class SourceError(MonitorError):
    """A log source cannot be read (missing, unreadable, not a log)."""

    exit_code = 66  # EX_NOINPUT


class StoreError(MonitorError):
    """The database cannot be opened or written."""

    exit_code = 73  # EX_CANTCREAT


class ModelError(MonitorError):
    """A saved detector model is missing, corrupt or does not match the current features."""

    exit_code = 65  # EX_DATAERR


class AlertError(MonitorError):
    """Alert delivery is misconfigured."""

    exit_code = 78
