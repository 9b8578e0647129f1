"""A tolerant reader of JSON lines, as agent CLIs print their events: one object per line.

Non-JSON lines, lines that are not objects, over-long lines and a partial last line are all
taken in stride: skipped (and counted), or -- for a last line that came without its newline --
parsed at ``close``. Memory stays bounded: a line longer than ``max_line`` is dropped as it
arrives, up to its newline, and the lines after it are read as usual. Shared by every kind that
reads a JSON event stream.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

MAX_LINE = 8 * 1024 * 1024  # a longer line cannot be an event we need; it is skipped


class JsonLines:
    """Feeds each complete JSON object line of a byte stream to ``on_event``."""

    def __init__(self, on_event: Callable[[dict[str, Any]], None], max_line: int = MAX_LINE) -> None:
        self._on_event = on_event
        self._max_line = max_line
        self._partial = bytearray()
        self._skipping = False  # inside an over-long line, until its newline
        self.events = 0
        self.skipped_lines = 0  # non-JSON, non-object or over-long lines

    def feed(self, data: bytes) -> None:
        """Take a chunk; complete lines are parsed, the rest waits for its newline."""
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return
            if not self._partial and not self._skipping:
                self._line(data[start:end])  # the usual case: a whole line in one chunk
            else:
                self._keep(data[start:end])
                if not self._skipping:
                    self._line(bytes(self._partial))
                self._partial.clear()
                self._skipping = False
            start = end + 1

    def close(self) -> None:
        """The stream has ended: parse a last line that came without its newline."""
        if self._partial and not self._skipping:
            self._line(bytes(self._partial))
        self._partial.clear()
        self._skipping = False

    def _keep(self, rest: bytes) -> None:
        if self._skipping or not rest:
            return
        if len(self._partial) + len(rest) > self._max_line:
            self._partial.clear()
            self._skipping = True
            self.skipped_lines += 1
            return
        self._partial += rest

    def _line(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        if not line.startswith(b"{") or len(line) > self._max_line:
            self.skipped_lines += 1
            return
        try:
            event = json.loads(line)
        except ValueError:
            self.skipped_lines += 1
            return
        if isinstance(event, dict):
            self.events += 1
            self._on_event(event)
        else:
            self.skipped_lines += 1


def number(value: Any) -> Any:
    """``value`` if it is a real number (not a bool), else ``None``."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def http_status(value: Any) -> int | None:
    """An HTTP status if ``value`` is one (an int 100-599), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599 else None
