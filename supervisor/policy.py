"""The retry policy: one function of (reason, attempt, settings), in one place.

Backoff is exponential with jitter: the k-th retry waits ``retry_delay * 2**(k-1)``, stretched by
a random 0-25% so that tasks failing together do not come back together, capped at one hour.
(A retry library such as stamina wraps a function call in-process; here the "call" is an
attempt whose state is persisted between tries, so the policy is this small function.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from supervisor.model import INTERRUPTED, OK
from supervisor.plan import TaskSettings

MAX_DELAY = 3600.0
NEVER_RETRIED = frozenset({OK, INTERRUPTED})


@dataclass(frozen=True)
class Decision:
    """What to do after a failed attempt: retry after ``delay`` seconds, or give up."""

    retry: bool
    delay: float = 0.0


def decide(reason: str, tries: int, settings: TaskSettings, rng: random.Random | None = None) -> Decision:
    """Decide after the ``tries``-th attempt of this invocation ended with ``reason``."""
    if reason in NEVER_RETRIED or tries > settings.retries:
        return Decision(retry=False)
    jitter = 1.0 + 0.25 * (rng or random).random()
    delay = min(MAX_DELAY, settings.retry_delay * 2 ** (tries - 1) * jitter)
    return Decision(retry=True, delay=delay)
