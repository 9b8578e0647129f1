"""The retry policy: one function of (reason, counts, settings), in one place.

=====================  =========================================================================
reason                 what happens
=====================  =========================================================================
``ok``, ``interrupted``  never retried
``disk-full``          never retried: another attempt cannot write its log either; free space,
                       then ``--retry-failed``
``auth``, ``billing``  never retried; no further task of the same agent kind starts (each would
                       fail the same way)
``usage-limit``        wait until the reset the CLI names, if that is within ``max_wait``, then
                       retry (not counted against ``retries``); otherwise like ``auth``. The
                       wait is the agent's rate-limit gate, closed until the reset (+1 minute)
``rate-limited``       retried, not counted against ``retries``, up to ``rate_limit_retries``
                       times; then as below. The wait is the agent's rate-limit gate: closed for
                       ``rate_limit_delay * 2**(k-1)`` (+0-25% jitter), k = closures in a row
                       (each failed probe doubles it), then one attempt probes
``max-turns``,         not retried unless the task lists the reason in ``retry_on``
``budget``,
``needs-input``,
``not-on-branch``,
``history-rewritten``
anything else          retried ``retries`` times, the k-th retry after ``retry_delay * 2**(k-1)``
                       (+0-25% jitter, at most one hour)
=====================  =========================================================================

``gate_delay`` gives the closures of an agent's rate-limit gate (``supervisor.engine.gate``):
while it is closed no attempt of the agent (or of its ``account``) starts, so a 429 storm costs
one attempt per delay instead of ``jobs``. A task whose retry waits at the gate does not sleep on
a timer of its own: it starts as soon as the gate admits it (``Decision.gated``).

(A retry library such as stamina wraps a function call in-process; here the "call" is an
attempt whose state is persisted between tries and whose slot is freed while it waits, so the
policy is this small function.)
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from supervisor.plan.model import RETRYABLE_ON_REQUEST, TaskSettings
from supervisor.reasons import Reason

MAX_DELAY = 3600.0
NEVER_RETRIED = frozenset({Reason.OK, Reason.INTERRUPTED, Reason.DISK_FULL})
STOPS_KIND = frozenset({Reason.AUTH, Reason.BILLING})


@dataclass(frozen=True)
class Decision:
    """What to do after a failed attempt.

    ``retry``: try again after ``delay`` seconds; ``counted``: the retry uses one of ``retries``;
    ``stop_kind``: give up and start no further task of this agent kind; ``gated``: the retry
    waits at the agent's rate-limit gate instead (``delay`` is what the task alone would wait).
    """

    retry: bool
    delay: float = 0.0
    counted: bool = True
    stop_kind: bool = False
    gated: bool = False


def _rate_delay(settings: TaskSettings, n: int, jitter: float) -> float:
    return min(MAX_DELAY, settings.rate_limit_delay * 2.0 ** (n - 1) * jitter)


def _reset_delay(reset_in: float, jitter: float) -> float:
    return max(0.0, reset_in) + 60 * jitter


def gate_delay(
    reason: str,
    *,
    closure: int,
    settings: TaskSettings,
    reset_in: float | None = None,
    rng: random.Random | None = None,
) -> float | None:
    """Seconds an agent's rate-limit gate stays closed after an attempt ended with ``reason``, or
    ``None`` when that end does not close it. ``closure``: the how-many-th closure in a row it is
    (``Ticket.closure``); ``reset_in``: seconds until a usage limit resets, when the agent said.
    A usage limit beyond ``max_wait`` (or without a reset) does not close it: it stops the kind."""
    cls = Reason.of(reason)
    if cls is Reason.RATE_LIMITED:
        return _rate_delay(settings, closure, 1.0 + 0.25 * (rng or random).random())
    if cls is Reason.USAGE_LIMIT and reset_in is not None and reset_in <= settings.max_wait:
        return _reset_delay(reset_in, 1.0 + 0.25 * (rng or random).random())
    return None


def decide(  # noqa: PLR0911 - one return per row of the table above
    reason: str,
    *,
    failures: int,
    rate_limited: int,
    settings: TaskSettings,
    reset_in: float | None = None,
    rng: random.Random | None = None,
) -> Decision:
    """Decide after a failed attempt.

    ``failures``: counted failures of the task in this invocation, this one included;
    ``rate_limited``: rate-limited attempts so far, this one included; ``reset_in``: seconds until
    a usage limit resets, when the agent said.
    """
    jitter = 1.0 + 0.25 * (rng or random).random()
    cls = Reason.of(reason)
    if cls in NEVER_RETRIED:
        return Decision(retry=False)
    if cls in STOPS_KIND:
        return Decision(retry=False, stop_kind=True)
    if cls is Reason.USAGE_LIMIT:
        if reset_in is not None and reset_in <= settings.max_wait:
            return Decision(retry=True, delay=_reset_delay(reset_in, jitter), counted=False, gated=True)
        return Decision(retry=False, stop_kind=True)
    if cls is Reason.RATE_LIMITED and rate_limited <= settings.rate_limit_retries:
        delay = _rate_delay(settings, rate_limited, jitter)
        return Decision(retry=True, delay=delay, counted=False, gated=True)
    if cls in RETRYABLE_ON_REQUEST and reason not in settings.retry_on:
        return Decision(retry=False)
    if failures > settings.retries:
        return Decision(retry=False)
    return Decision(retry=True, delay=min(MAX_DELAY, settings.retry_delay * 2 ** (failures - 1) * jitter))
