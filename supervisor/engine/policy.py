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
                       retry (not counted against ``retries``); otherwise like ``auth``
``rate-limited``       retried after ``rate_limit_delay * 2**(n-1)`` (+0-25% jitter), not counted
                       against ``retries``, up to ``rate_limit_retries`` times; then as below
``max-turns``,         not retried unless the task lists the reason in ``retry_on``
``budget``,
``needs-input``,
``not-on-branch``,
``history-rewritten``
anything else          retried ``retries`` times, the k-th retry after ``retry_delay * 2**(k-1)``
                       (+0-25% jitter, at most one hour)
=====================  =========================================================================

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
    ``stop_kind``: give up and start no further task of this agent kind.
    """

    retry: bool
    delay: float = 0.0
    counted: bool = True
    stop_kind: bool = False


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
            return Decision(retry=True, delay=max(0.0, reset_in) + 60 * jitter, counted=False)
        return Decision(retry=False, stop_kind=True)
    if cls is Reason.RATE_LIMITED and rate_limited <= settings.rate_limit_retries:
        delay = min(MAX_DELAY, settings.rate_limit_delay * 2 ** (rate_limited - 1) * jitter)
        return Decision(retry=True, delay=delay, counted=False)
    if cls in RETRYABLE_ON_REQUEST and reason not in settings.retry_on:
        return Decision(retry=False)
    if failures > settings.retries:
        return Decision(retry=False)
    return Decision(retry=True, delay=min(MAX_DELAY, settings.retry_delay * 2 ** (failures - 1) * jitter))
