"""Evidence helpers for the agent kinds beyond Claude: a bounded stderr tail and status lookups.

`TextTail` keeps the last lines of a byte stream (an agent's stderr, where some CLIs report
what their stdout leaves out) without growing on an endless line; `status_in_text` finds the
HTTP status a CLI's error text names; `add_numbers` sums usage counts that may be missing.
"""

from __future__ import annotations

import re
from typing import Any

from supervisor.agents.jsonlines import number

Event = dict[str, Any]
_STATUS_IN_TEXT = re.compile(r"\b(?:status(?: code)?:?|code\"?:)\s*\"?([1-5]\d\d)\b", re.IGNORECASE)


class TextTail:
    """The last `keep` non-empty lines of a byte stream, each cut to `width` characters."""

    def __init__(self, keep: int = 40, width: int = 500) -> None:
        self._keep = keep
        self._width = width
        self._partial = b""
        self.lines: list[str] = []

    def feed(self, data: bytes) -> list[str]:
        """Take a chunk of the stream; return the lines it completed (empty ones left out)."""
        data = self._partial + data
        *complete, rest = data.split(b"\n")
        # An endless line must not grow the buffer: what is past `width` is never looked at.
        self._partial = rest[: self._width * 4]
        return [text for raw in complete if (text := self._add(raw))]

    def close(self) -> list[str]:
        """The stream has ended: keep a last line without its newline; return it if there is one."""
        text = self._add(self._partial)
        self._partial = b""
        return [text] if text else []

    def _add(self, raw: bytes) -> str:
        text = raw.decode("utf-8", "replace").strip()[: self._width]
        if text:
            self.lines = [*self.lines[-(self._keep - 1) :], text]
        return text

    def text(self) -> str:
        """The kept lines, newline-separated."""
        return "\n".join(self.lines)


def status_in_text(text: str) -> int | None:
    """An HTTP status a CLI's error text names ("last status: 429", ``"code":500``), else None."""
    match = _STATUS_IN_TEXT.search(text)
    return int(match.group(1)) if match else None


def add_numbers(total: Any, value: Any) -> Any:
    """`total` plus `value` where `value` is a number; ``None`` until a first number came."""
    if number(value) is None:
        return total
    return value if total is None else total + value
