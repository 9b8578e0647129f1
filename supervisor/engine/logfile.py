"""An attempt's log file: the raw bytes of stdout and stderr in arrival order, plus the last line.

Bytes are written as they arrive, unbuffered, never reformatted: safe with very long lines and
invalid UTF-8. Lines the supervisor adds start with ``[pagent]``. The last complete line
(bounded) is kept for the live view.

A log that cannot be written (a full disk, an I/O error) never raises into the code that feeds
it: the first failure is kept in ``failure`` (a reason: ``disk-full`` or ``io-error: ...``),
later output is counted in ``dropped`` and not written, and the attempt is stopped for it (see
``supervisor.engine.attempt``).

``DiskReserve`` is space held back on the disk of the plan's state (a ballast file, as databases
keep one): given up the moment that disk is found full, so that the run's last records, its
summary and its report can still be written.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from supervisor.reasons import Reason, mishap

RESERVE = 512 * 1024  # enough for a run's last transactions, summary.json and report.html


class DiskReserve:
    """Space held back for the end of a run (see the module docstring)."""

    def __init__(self, path: Path, size: int = RESERVE) -> None:
        self.path = path
        self.size = size
        self.held = False

    def hold(self) -> None:
        """Claim the space (best effort: on a disk that has not got it, there is no reserve)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
        except OSError:
            return
        try:
            try:
                os.posix_fallocate(fd, 0, self.size)
            except OSError:  # a file system without fallocate: real blocks, written
                os.pwrite(fd, bytes(self.size), 0)
            self.held = True
        except OSError:
            with contextlib.suppress(OSError):
                self.path.unlink()
        finally:
            os.close(fd)

    def release(self) -> bool:
        """Give the space back; True if there was some to give."""
        held, self.held = self.held, False
        with contextlib.suppress(OSError):
            self.path.unlink()
        return held


class LogFile:
    """One attempt's log (see the module docstring)."""

    def __init__(self, path: Path, on_full: Callable[[], object] | None = None) -> None:
        self._on_full = on_full  # called once when the disk is found full (``DiskReserve.release``)
        try:
            self._file: BinaryIO = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        except FileNotFoundError:  # the run's first attempt makes the folder
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "wb", buffering=0)  # noqa: SIM115
        self.path = path
        self._tail = b""
        self.last_line = ""
        self.failure: str | None = None  # why writing the log failed (a reason), once it did
        self.dropped = 0  # bytes of output not written since

    def _put(self, data: bytes) -> None:
        if self.failure is not None:
            self.dropped += len(data)
            return
        try:
            self._file.write(data)
        except OSError as exc:
            self.failure = mishap(exc)
            self.dropped += len(data)
            if self.failure == Reason.DISK_FULL and self._on_full is not None:
                self._on_full()

    def write(self, data: bytes) -> None:
        """Append agent output as it came."""
        self._put(data)
        # Remember the last complete line (bounded) for the live view.
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail = (self._tail + data)[-512:]
            return
        head = data[:cut]
        start = head.rfind(b"\n")
        line = head[start + 1 :] if start >= 0 else self._tail + head
        text = line[-200:].decode("utf-8", "replace").strip()
        if text:
            self.last_line = text
        self._tail = data[cut + 1 :][-512:]

    def note(self, text: str) -> None:
        """Add a line of the supervisor's own (e.g. why it stopped the agent), marked as such."""
        self._put(f"\n[pagent] {text}\n".encode())

    def close(self) -> None:
        try:
            self._file.close()
        except OSError as exc:  # a delayed write error surfaces at close on some file systems
            self.failure = self.failure or mishap(exc)
