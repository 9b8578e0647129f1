"""Test doubles for the runner's seams: a scripted launcher and a clock that never sleeps."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from supervisor.launch.seam import AttemptSpec, Exit, OutputCallback, Sample, Stream


@dataclass(frozen=True)
class Play:
    """One scripted attempt: what it prints, then how it ends (``hang``: until stopped)."""

    code: int = 0
    output: Sequence[bytes] = ()
    steps: int = 3  # scheduler checkpoints the attempt takes while "running"
    hang: bool = False


class FakeClock:
    """Time that advances only when someone sleeps; sleeping returns at once."""

    def __init__(self) -> None:
        self.now = 1_000_000.0
        self.slept: list[float] = []

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds
        await anyio.lowlevel.checkpoint()


@dataclass
class FakeHandle:
    """Plays one ``Play``; ``stop`` ends a hanging play as if SIGTERM had killed it."""

    play: Play
    on_output: OutputCallback
    pid: int
    pid_started: float = 0.0
    stopped: anyio.Event = field(default_factory=anyio.Event)

    async def wait(self) -> Exit:
        for chunk in self.play.output:
            self.on_output(chunk, Stream.STDOUT)
            await anyio.lowlevel.checkpoint()
        if self.play.hang:
            await self.stopped.wait()
            return Exit(signal=15)
        for _ in range(self.play.steps):
            await anyio.lowlevel.checkpoint()
        return Exit(code=self.play.code)

    async def stop(self, grace: float) -> None:
        self.stopped.set()

    async def finish(self, grace: float) -> int:
        return 0

    def sample(self) -> Sample | None:
        return None


class FakeLauncher:
    """Plays scripted attempts per task (the last play repeats) and records what happened."""

    def __init__(self, plays: Mapping[str, Sequence[Play]], default: Play = Play()) -> None:
        self.plays = plays
        self.default = default
        self.running = 0
        self.max_running = 0
        self.log: list[tuple[str, str, int]] = []  # ("start" | "end", task, attempt)
        self.specs: list[AttemptSpec] = []
        self._pids = itertools.count(1000)

    @asynccontextmanager
    async def start(self, spec: AttemptSpec, on_output: OutputCallback) -> AsyncIterator[FakeHandle]:
        plays = self.plays.get(spec.task_id, [self.default])
        play = plays[min(spec.attempt, len(plays)) - 1]
        self.specs.append(spec)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.log.append(("start", spec.task_id, spec.attempt))
        try:
            yield FakeHandle(play, on_output, pid=next(self._pids))
        finally:
            self.running -= 1
            self.log.append(("end", spec.task_id, spec.attempt))
