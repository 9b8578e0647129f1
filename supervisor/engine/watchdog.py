"""Decides, from times and CPU samples alone, when a running attempt has to be stopped.

Pure logic with explicit timestamps: the runner feeds it output, announced waits and samples,
and asks for a verdict at each tick; the tests feed it invented times.

*Stalled* means: for ``stall_timeout`` seconds the attempt wrote no output **and** its process
tree used less than ``STALL_CPU_FRACTION`` of one core over those seconds -- the CPU time used
across the whole window, not any single sample: an agent idling on a dead connection has short
bursts (the real Claude CLI: single 1 s samples up to 11 %, 10 s windows 0.9 % on average),
real work is far above (a computing agent: ~100 %). An agent that prints regularly while using
no CPU, or computes silently, is alive.

An agent may announce a silence (the Claude CLI waiting out an API retry, ``retry_delay_ms``):
the stall clock then starts at the end of the announced wait, so the wait itself is never a
stall; any later output ends the allowance.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from supervisor.reasons import Reason

STALL_CPU_FRACTION = 0.02  # 2% of one core, averaged over the stall window


def tick_interval(timeout: float, stall_timeout: float) -> float:
    """How often to sample and check: a quarter of the tighter limit, between 0.2 s and 5 s."""
    return min(5.0, max(0.2, min(timeout, stall_timeout) / 4))


@dataclass
class Watchdog:
    """The liveness bookkeeping of one attempt (times on the runner's monotonic clock)."""

    timeout: float
    stall_timeout: float
    started: float
    last_activity: float = 0.0  # the latest output
    quiet_until: float | None = None  # the end of a silence the agent announced
    # (time, CPU seconds used since the first sample): the stall window and one sample before it.
    _samples: deque[tuple[float, float]] = field(default_factory=deque)
    _last_cpu: float | None = None
    _used: float = 0.0

    def __post_init__(self) -> None:
        self.last_activity = max(self.last_activity, self.started)

    def output(self, now: float) -> None:
        """The attempt wrote something (or, for Claude, emitted an event): it is alive."""
        self.last_activity = max(self.last_activity, now)

    def quiet(self, now: float, seconds: float | None) -> None:
        """The agent announced ``seconds`` of silence from ``now`` (``None``: it ended)."""
        self.quiet_until = None if seconds is None else now + max(0.0, seconds)

    def sampled(self, now: float, cpu_seconds: float) -> None:
        """A sample of the tree's total CPU time.

        The total can drop (a child that used CPU left the tree): only increases count as use,
        so a drop is neither activity nor an error, and use after it is measured from there.
        """
        if self._last_cpu is not None:
            self._used += max(0.0, cpu_seconds - self._last_cpu)
        self._last_cpu = cpu_seconds
        self._samples.append((now, self._used))
        start = now - self.stall_timeout
        while len(self._samples) > 2 and self._samples[1][0] <= start:
            self._samples.popleft()  # the oldest still covers the window's start

    def _busy(self, now: float) -> bool:
        """Whether the tree used at least ``STALL_CPU_FRACTION`` of a core over the window that
        ends now (from the last sample at or before its start, else from the first sample)."""
        if len(self._samples) < 2:
            return False
        start = now - self.stall_timeout
        reference = self._samples[0]
        for sample in self._samples:
            if sample[0] > start:
                break
            reference = sample
        latest = self._samples[-1]
        elapsed = latest[0] - reference[0]
        return elapsed > 0 and (latest[1] - reference[1]) / elapsed >= STALL_CPU_FRACTION

    def verdict(self, now: float) -> str | None:
        """``"timeout"`` or ``"stalled"`` if the attempt must be stopped now, else ``None``."""
        if now - self.started >= self.timeout:
            return Reason.TIMEOUT.value
        silent_since = max(self.last_activity, self.quiet_until or self.started)
        if now - silent_since >= self.stall_timeout and not self._busy(now):
            return Reason.STALLED.value
        return None
