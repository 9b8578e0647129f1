"""The ``plain`` agent kind: any output is liveness, the exit code is the outcome."""

from __future__ import annotations

from supervisor.agents.base import Outcome, outcome_from_exit
from supervisor.launch.seam import Exit


class PlainParser:
    """The ``plain`` kind: any output is liveness, the exit code is the outcome."""

    finished = False
    status = None

    def feed(self, data: bytes) -> None:
        pass

    def notices(self) -> list[str]:
        return []

    def outcome(self, exit: Exit) -> Outcome:
        return outcome_from_exit(exit)
