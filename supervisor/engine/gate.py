"""What lets an attempt start: a free slot, capacity where it runs, money left, its kind not stopped.

``LaunchGate`` is shared by every task run of an invocation. ``slot`` waits for the executor to
report capacity (memory, say: GNU parallel's ``--memfree``; the run says once that it waits)
and for one of the plan's ``jobs`` slots. ``blocked`` says why no attempt of an agent kind may
start at all now: the run's spend reached ``max_cost_usd``, or the kind was stopped because
every further attempt would fail the same way (authentication, billing, a usage limit beyond
``max_wait``). ``Stop`` is the invocation's stop request, with a helper to wait for something
unless a stop comes first.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import anyio

from supervisor.engine import events
from supervisor.engine.clock import Clock
from supervisor.reasons import Reason
from supervisor.seam import Executor

T = TypeVar("T")


class Stop:
    """The invocation's stop request (SIGINT/SIGTERM): start nothing new, stop what runs."""

    def __init__(self) -> None:
        self._event = anyio.Event()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()

    async def unless(self, wait: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Await ``wait(*args)`` unless a stop is requested first; False if it was."""
        if self.requested:
            return False
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await self._event.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await wait(*args)
            tg.cancel_scope.cancel()
        return not self.requested

    async def before(self, call: Callable[..., Awaitable[T]], *args: Any, grace: float = 0.0) -> T | None:
        """``await call(*args)``, cancelled ``grace`` seconds after a stop is requested (at once
        by default); its result, or ``None`` if the stop came first. What ``call`` raises is
        raised as it is. A workspace call of the executor is cancellable this way: its git dies
        with the await."""
        if self.requested and grace <= 0:
            return None
        done: list[T] = []
        failed: list[Exception] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                try:
                    done.append(await call(*args))
                except Exception as exc:  # raised below, outside the task group (not wrapped)
                    failed.append(exc)
                finally:
                    tg.cancel_scope.cancel()

            tg.start_soon(run)
            await self._event.wait()
            await anyio.sleep(grace)
            tg.cancel_scope.cancel()
        if failed:
            raise failed[0]
        return done[0] if done else None


class LaunchGate:
    """Slots, capacity, budget and stopped kinds (see the module docstring)."""

    def __init__(
        self,
        jobs: int,
        executor: Executor,
        clock: Clock,
        emit: Callable[[events.Event], None],
        *,
        max_cost: float | None,
        spent: Callable[[], float],
        poll: float = 2.0,
    ) -> None:
        self._limiter = anyio.CapacityLimiter(jobs)
        self._executor = executor
        self._clock = clock
        self._emit = emit
        self._max_cost = max_cost
        self._spent = spent
        self._poll = poll
        self._waiting = False
        self._over_budget = False
        self.stopped_kinds: dict[str, str] = {}

    async def capacity(self, memory: int, task_id: str) -> None:
        """Wait until the executor can take an attempt needing ``memory`` bytes free."""
        while (problem := self._executor.capacity_problem(memory)) is not None:
            if not self._waiting:
                self._waiting = True
                self._emit(events.Notice(problem, task_id))
            await self._clock.sleep(self._poll)
        self._waiting = False

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one of the plan's ``jobs`` slots."""
        async with self._limiter:
            yield

    def blocked(self, kind: str) -> str | None:
        """Why no new attempt of agent kind ``kind`` may start now, or ``None``."""
        if self._max_cost is not None and (spent := self._spent()) >= self._max_cost:
            if not self._over_budget:  # said once, when the first task is held back
                self._over_budget = True
                message = (
                    f"max_cost_usd = {self._max_cost:g} reached (${spent:.2f} spent); "
                    "no further task was started"
                )
                self._emit(events.Notice(message))
                self._emit(events.StoppedEarly(Reason.MAX_COST.value, message))
            return Reason.MAX_COST.value
        return self.stopped_kinds.get(kind)

    def stop_kind(self, kind: str, reason: str) -> bool:
        """Start no further attempt of ``kind``; True if it was not stopped yet."""
        if kind in self.stopped_kinds:
            return False
        self.stopped_kinds[kind] = reason
        return True
