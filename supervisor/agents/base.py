"""Agent kinds: how to read what an agent prints and decide how its attempt went.

A kind is a small parser object made fresh for each attempt; the runner feeds it stdout and asks
for the outcome once the process has ended. ``plain`` trusts the exit code; ``claude``
(``supervisor.claude``) reads Claude Code's stream-json. ``supervisor.attempt.new_parser``
picks the kind's parser for each attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from supervisor.launch.seam import Exit
from supervisor.state.records import OK, exit_reason, signal_reason


@dataclass(frozen=True)
class Outcome:
    """How an attempt went according to its agent kind, plus whatever it measured."""

    succeeded: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


class OutputParser(Protocol):
    """Reads one attempt's stdout as it arrives and judges the attempt at the end."""

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout (every chunk of output already counts as a sign of life)."""

    def outcome(self, exit: Exit) -> Outcome:
        """Judge the attempt once its process has ended with ``exit``."""

    def notices(self) -> list[str]:
        """Notable events since the last call (e.g. an API retry), each one line for the log."""

    @property
    def finished(self) -> bool:
        """True once the agent has announced its final result (the process may still run)."""

    @property
    def status(self) -> str | None:
        """A short live status for ``pagent status`` ("retrying API, 529, attempt 2/10"), or None."""


def outcome_from_exit(exit: Exit) -> Outcome:
    """The plain rule: exit code 0 succeeded, anything else failed with its code or signal."""
    if exit.signal_name is not None:
        return Outcome(succeeded=False, reason=signal_reason(exit.signal_name))
    code = exit.code if exit.code is not None else -1
    reason = exit_reason(code)
    return Outcome(succeeded=reason == OK, reason=reason)
