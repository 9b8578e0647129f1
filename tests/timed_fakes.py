"""Test doubles for schedules in time: a virtual clock that jumps when everything waits, and a
scripted executor whose attempts take (virtual) seconds.

``VirtualClock`` is trio's autojump clock for anyio on asyncio: ``sleep`` waits for real (on an
event), and a driver task moves time to the earliest sleeper's deadline whenever every other task
is blocked, so concurrent sleepers overlap as they would on a real clock -- unlike
``tests.fakes.FakeClock``, whose sleepers each add their seconds. A run of attempts that take
minutes is over in milliseconds, with exact start and end times. (It reads asyncio's private
``Task._fut_waiter`` to tell a blocked task from a runnable one, as anyio's own
``wait_all_tasks_blocked`` does -- that one sleeps 0.1 s of real time at every check -- and the
loop's private queue of due callbacks.)

``TimedExecutor`` is a ``tests.fakes.FakeExecutor`` whose attempt of a task takes
``seconds[task]`` on the clock (or its ``TimedPlay``'s own seconds), and whose play may depend on
the time it starts (``play``): a scripted API that answers 429 until a moment, say. It records
every start and end with its time.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from supervisor.seam import AttemptSpec, Exit, OutputCallback
from tests.fakes import FakeExecutor, FakeHandle, Play


@dataclass(order=True)
class _Sleeper:
    deadline: float
    seq: int
    event: anyio.Event = field(compare=False, default_factory=anyio.Event)
    gone: bool = field(compare=False, default=False)
    callback: Callable[[], object] | None = field(compare=False, default=None)  # call_later's


class VirtualClock:
    """A clock whose time jumps to the next deadline once every task waits (see the module
    docstring); use it inside ``async with clock.running():``."""

    def __init__(self, start: float = 1_000_000.0, busy: Callable[[], bool] | None = None) -> None:
        self.now = start
        # Work outside the loop that takes no virtual time (the store's writes, on their
        # thread): the clock never jumps while it is under way.
        self._busy = busy
        self.start = start
        self.slept: list[float] = []
        self._sleepers: list[_Sleeper] = []
        self._seq = itertools.count()

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds <= 0:
            await anyio.lowlevel.checkpoint()
            return
        sleeper = _Sleeper(self.now + seconds, next(self._seq))
        heapq.heappush(self._sleepers, sleeper)
        try:
            await sleeper.event.wait()
        finally:
            sleeper.gone = True  # woken or cancelled: it no longer holds time back

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Callable[[], object]:
        """``callback`` when the time has come (the driver calls it, as it wakes a sleeper)."""
        self.slept.append(seconds)
        sleeper = _Sleeper(self.now + max(0.0, seconds), next(self._seq), callback=callback)
        heapq.heappush(self._sleepers, sleeper)

        def cancel() -> None:
            sleeper.gone = True

        return cancel

    @asynccontextmanager
    async def running(self) -> AsyncIterator[VirtualClock]:
        """Drive the clock while the block runs."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._drive)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()

    async def _drive(self) -> None:
        this = asyncio.current_task()
        while True:
            await anyio.lowlevel.checkpoint()
            if not _all_blocked(this) or (self._busy is not None and self._busy()):
                continue
            while self._sleepers and self._sleepers[0].gone:
                heapq.heappop(self._sleepers)
            if not self._sleepers:
                await anyio.sleep(0.001)  # waiting on something else (nothing sleeps): look again
                continue
            self.now = max(self.now, self._sleepers[0].deadline)
            while self._sleepers and self._sleepers[0].deadline <= self.now:
                due = heapq.heappop(self._sleepers)
                if due.callback is None:
                    due.event.set()
                elif not due.gone:
                    due.gone = True
                    due.callback()


def _all_blocked(this: asyncio.Task[object] | None) -> bool:
    """Whether every task but ``this`` waits on a future that is not done, and no callback is
    due (anyio delivers a cancellation from one, to a task that is already waiting)."""
    if getattr(asyncio.get_running_loop(), "_ready", None):
        return False
    for task in asyncio.all_tasks():
        if task is this:
            continue
        waiter = getattr(task, "_fut_waiter", None)
        if waiter is None or waiter.done():
            return False
    return True


@dataclass
class _TimedHandle(FakeHandle):
    """A play that first takes its seconds on the clock (``stop`` cuts them short)."""

    clock: VirtualClock | None = None
    seconds: float = 0.0

    async def wait(self) -> Exit:
        assert self.clock is not None
        with anyio.CancelScope() as scope:

            async def cut() -> None:
                await self.stopped.wait()
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cut)
                await self.clock.sleep(self.seconds)
                tg.cancel_scope.cancel()
        if self.stopped.is_set():
            return Exit(signal=15)
        return await super().wait()


@dataclass(frozen=True)
class TimedPlay(Play):
    """A play that takes ``seconds`` on the clock, whatever its task's default."""

    seconds: float = 0.0


@dataclass(frozen=True)
class Timed:
    """One start or end of an attempt, at a (virtual) time."""

    at: float
    task_id: str
    attempt: int


class TimedExecutor(FakeExecutor):
    """Attempts that take ``seconds[task]`` (default ``default_seconds``); ``play(spec, now)``
    scripts each one from the time it starts (default: the plays of ``FakeExecutor``)."""

    def __init__(
        self,
        clock: VirtualClock,
        seconds: Mapping[str, float],
        *,
        default_seconds: float = 1.0,
        play: Callable[[AttemptSpec, float], Play] | None = None,
        plays: Mapping[str, list[Play]] | None = None,
    ) -> None:
        super().__init__(plays or {})
        self.clock = clock
        self.seconds = dict(seconds)
        self.default_seconds = default_seconds
        self.script = play
        self.starts: list[Timed] = []
        self.ends: list[Timed] = []
        self._numbers = itertools.count(1)

    @asynccontextmanager
    async def start(self, spec: AttemptSpec, on_output: OutputCallback) -> AsyncIterator[FakeHandle]:
        if spec.prompt_file is None:  # a verify run
            async with super().start(spec, on_output) as handle:
                yield handle
            return
        now = self.clock.now
        play = self.script(spec, now) if self.script is not None else self._play(spec)
        self.specs.append(spec)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.starts.append(Timed(now, spec.task_id, spec.attempt))
        seconds = self.seconds.get(spec.task_id, self.default_seconds)
        if isinstance(play, TimedPlay):
            seconds = play.seconds
        try:
            yield _TimedHandle(
                play, on_output, ref=f"timed-{next(self._numbers)}", clock=self.clock, seconds=seconds
            )
        finally:
            self.running -= 1
            self.ends.append(Timed(self.clock.now, spec.task_id, spec.attempt))

    def started(self) -> Iterator[str]:
        """Task ids in the order their attempts started."""
        return (start.task_id for start in self.starts)
