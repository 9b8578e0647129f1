"""The one exception family of the core; the CLI turns each into one line and an exit code."""

from __future__ import annotations

# Exit codes, documented in the README ("Exit codes").
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run of this plan is active
EXIT_SIGINT = 130
EXIT_SIGTERM = 143


class PagentError(Exception):
    """Base of every error the core raises on purpose; ``exit_code`` is what the CLI exits with."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class PlanError(PagentError):
    """The plan (or a flag that refers to it) is invalid; nothing has been created."""

    exit_code = EXIT_USAGE


class UsageError(PagentError):
    """A command was called with arguments that cannot work (unknown run, unknown task...)."""

    exit_code = EXIT_USAGE


class LockedError(PagentError):
    """Another run of the same plan holds the plan's lock."""

    exit_code = EXIT_LOCKED


class StateError(PagentError):
    """The plan's state (``.pagent/`` beside it: the database, the lock, the run files) cannot be
    read or written: a read-only directory, a full disk, a ``state.db`` that is not a database.
    Exit 2 when nothing was begun (README, "Exit codes"); a run that was begun exits 1."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, exit_code: int | None = None, *, disk_full: bool = False) -> None:
        super().__init__(message, exit_code)
        self.disk_full = disk_full


class GitError(PagentError):
    """A git command failed; the message carries git's own words."""

    exit_code = EXIT_FAILED
