"""An attempt's log file: the raw bytes of stdout and stderr in arrival order, plus the last line.

Bytes are written as they arrive, unbuffered, never reformatted: safe with very long lines and
invalid UTF-8. Lines the supervisor adds start with ``[pagent]``. The last complete line
(bounded) is kept for the live view.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO


class LogFile:
    """One attempt's log (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        try:
            self._file: BinaryIO = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        except FileNotFoundError:  # the run's first attempt makes the folder
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "wb", buffering=0)  # noqa: SIM115
        self.path = path
        self._tail = b""
        self.last_line = ""

    def write(self, data: bytes) -> None:
        """Append agent output as it came."""
        self._file.write(data)
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
        self._file.write(f"\n[pagent] {text}\n".encode())

    def close(self) -> None:
        self._file.close()
