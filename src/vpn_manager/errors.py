"""The one error hierarchy. Services raise only these; each front end maps them once.

Every error carries a one-sentence message and, where we know one, a hint that says what to do.
The exit code of each class is part of the CLI's contract (README: "Exit codes").
"""

from __future__ import annotations

QUOTED_MOST = 80  # characters of a value an error shows (a 10,000-character name is not echoed)


def quoted(value: object) -> str:
    """A value as an error sentence shows it: repr() (control characters escaped), a long one
    cut to its first QUOTED_MOST characters and its length."""
    if isinstance(value, str) and len(value) > QUOTED_MOST:
        return f"{value[:QUOTED_MOST]!r}… ({len(value):,} characters)"
    return repr(value)


class VpnError(Exception):
    """Base of every error the tool reports to a user."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class InvalidInput(VpnError):
    """The user gave a value we cannot accept (a name, a size, a date, a file's content)."""

    exit_code = 3


class NotFound(VpnError):
    """A named thing does not exist."""

    exit_code = 4


class Conflict(VpnError):
    """The change would clash with what exists (a duplicate name, a port in use)."""

    exit_code = 5


class ConfigError(VpnError):
    """The settings file or environment cannot be read or holds invalid values."""

    exit_code = 6


class StorageError(VpnError):
    """The database cannot be reached, is locked, or is not in a state we can use."""

    exit_code = 7


class EngineError(VpnError):
    """A VPN engine refused a config, failed to start, or stopped answering."""

    exit_code = 8


class EngineMissing(EngineError):
    """The engine a server needs is not installed."""

    exit_code = 9


class FileError(VpnError):
    """A file we were asked to write (or read) cannot be."""

    exit_code = 11


class Cancelled(VpnError):
    """The user declined a confirmation or interrupted the command."""

    exit_code = 10
