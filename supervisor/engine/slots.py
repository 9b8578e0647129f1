"""The plan's ``jobs`` slots, handed to waiters by rank: lowest first, then first come first served.

``supervisor.engine.gate.LaunchGate`` holds one ``Slots`` for the run; the runner ranks a
wave's task runs (``supervisor.engine.order``), so a freed slot goes to the waiting task that
is expected to take longest, a retry included. With every rank equal it behaves like anyio's
``CapacityLimiter`` (FIFO). Cancelled waiters give their place (or a slot just granted) on.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel


@dataclass(order=True)
class _Waiter:
    rank: float
    seq: int
    event: anyio.Event = field(compare=False, default_factory=anyio.Event)
    granted: bool = field(compare=False, default=False)
    gone: bool = field(compare=False, default=False)


class Slots:
    """``jobs`` slots, handed to waiters lowest rank first, then first come first served."""

    def __init__(self, jobs: int) -> None:
        self._free = jobs
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()

    async def acquire(self, rank: float) -> None:
        """Take a slot; wait (ranked) while none is free."""
        while self._waiters and self._waiters[0].gone:
            heapq.heappop(self._waiters)
        if self._free > 0 and not self._waiters:
            await anyio.lowlevel.checkpoint_if_cancelled()
            self._free -= 1
            await anyio.lowlevel.cancel_shielded_checkpoint()
            return
        waiter = _Waiter(rank, next(self._seq))
        heapq.heappush(self._waiters, waiter)
        try:
            await waiter.event.wait()
        except BaseException:
            if waiter.granted:  # given a slot just as it was cancelled: hand it on
                self.release()
            else:
                waiter.gone = True
            raise

    def release(self) -> None:
        """Give a slot back: to the best waiter, else to the free ones."""
        while self._waiters:
            waiter = heapq.heappop(self._waiters)
            if not waiter.gone:
                waiter.granted = True
                waiter.event.set()
                return
        self._free += 1
