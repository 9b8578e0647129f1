"""Decides, from times and CPU samples alone, when a running attempt has to be stopped.

Pure logic with explicit timestamps: the runner feeds it output and samples, and asks for a
verdict at each tick; the tests feed it invented times.

*Stalled* means: for ``stall_timeout`` seconds the attempt wrote no output **and** its process
tree used less than ``STALL_CPU_FRACTION`` of one core between samples. The threshold sits well
above what an agent waiting on a dead connection burns (the real Claude CLI: about 0.4% of a
core) and far below any real work (a computing agent: ~100%). An agent that prints regularly
while using no CPU, or computes silently, is alive.
"""

from __future__ import annotations

from dataclasses import dataclass

from supervisor.reasons import Reason

STALL_CPU_FRACTION = 0.02  # 2% of one core


def tick_interval(timeout: float, stall_timeout: float) -> float:
    """How often to sample and check: a quarter of the tighter limit, between 0.2 s and 5 s."""
    return min(5.0, max(0.2, min(timeout, stall_timeout) / 4))


@dataclass
class Watchdog:
    """The liveness bookkeeping of one attempt (times on the runner's monotonic clock)."""

    timeout: float
    stall_timeout: float
    started: float
    last_activity: float = 0.0
    _last_cpu: float | None = None
    _last_sample_at: float | None = None

    def __post_init__(self) -> None:
        self.last_activity = max(self.last_activity, self.started)

    def output(self, now: float) -> None:
        """The attempt wrote something (or, for Claude, emitted an event): it is alive."""
        self.last_activity = max(self.last_activity, now)

    def sampled(self, now: float, cpu_seconds: float) -> None:
        """A sample of the tree's total CPU time; enough CPU since the last one counts as alive."""
        if self._last_cpu is not None and self._last_sample_at is not None:
            elapsed = now - self._last_sample_at
            used = max(0.0, cpu_seconds - self._last_cpu)
            if elapsed > 0 and used / elapsed >= STALL_CPU_FRACTION:
                self.last_activity = max(self.last_activity, now)
        self._last_cpu = cpu_seconds
        self._last_sample_at = now

    def verdict(self, now: float) -> str | None:
        """``"timeout"`` or ``"stalled"`` if the attempt must be stopped now, else ``None``."""
        if now - self.started >= self.timeout:
            return Reason.TIMEOUT.value
        if now - self.last_activity >= self.stall_timeout:
            return Reason.STALLED.value
        return None
