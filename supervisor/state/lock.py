"""One run per plan at a time: an exclusive ``flock`` on the plan's lock file (``Layout.lock_file``).

The kernel releases a ``flock`` when its holder dies, however it dies, so a stale lock cannot
exist: the next run simply gets it (and then repairs what the dead run left). The file holds
the holder's pid and start time, for the message another run prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

from supervisor.errors import LockedError, StateError


class PlanLock:
    """The exclusive lock of one plan; a context manager."""

    def __init__(self, path: Path) -> None:
        self.path = path  # the plan's lock file (``Layout.lock_file``)
        self._fd: int | None = None

    def acquire(self, what: str) -> None:
        """Take the lock or raise ``LockedError`` naming the holder; never waits. ``StateError``
        if the lock file cannot be made (a read-only directory)."""
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StateError(f"{what}: cannot take the lock {self.path}: {exc.strerror or exc}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_holder(self.path)
            since = holder.get("started", "?") if holder else "?"
            pid = holder.get("pid", "?") if holder else "?"
            raise LockedError(f"{what}: another run is active (pid {pid}, started {since})") from None
        self._fd = fd
        info = {"pid": os.getpid(), "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}
        with contextlib.suppress(OSError):  # only for another run's message: a full disk may refuse it
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        """Give the lock up (also happens when the process dies)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> PlanLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def read_holder(path: Path) -> dict[str, Any] | None:
    """What the lock file says about its holder, or ``None``."""
    with contextlib.suppress(OSError, ValueError):
        data = json.loads(path.read_text() or "null")
        return data if isinstance(data, dict) else None
    return None


def is_locked(path: Path) -> dict[str, Any] | None:
    """The holder's info if a run of the plan is active now (its lock file ``path`` is held),
    else ``None``."""
    if not path.exists():
        return None
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return read_holder(path) or {}
    finally:
        os.close(fd)
    return None
