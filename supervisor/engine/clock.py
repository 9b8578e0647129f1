"""Time as the engine sees it: a protocol the tests fill with a fake clock, and the real one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

import anyio


class Clock(Protocol):
    """Time as the runner sees it; tests inject a fake one."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch, for records."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for limits."""

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``."""

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Callable[[], object]:
        """Call ``callback`` (on the event loop's thread, from no task) ``seconds`` from now;
        return what cancels it. Cheaper than a task that sleeps: no task, no cancellation."""


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Callable[[], object]:
        return asyncio.get_running_loop().call_later(seconds, callback).cancel
