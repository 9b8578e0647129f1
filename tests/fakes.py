"""Test doubles for the engine's seams: a scripted executor and a clock that never sleeps.

``FakeExecutor`` fills the executor seam (``supervisor.seam``) without a process, a pid, git or
``/proc``: each attempt plays a scripted ``Play``; workspaces are names; ``collect`` reports the
scripted facts; ``sweep`` stops scripted leftovers. The engine cannot tell it from a real one.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import anyio
import anyio.lowlevel

from supervisor.seam import (
    AttemptSpec,
    Begun,
    CollectRequest,
    DiffStats,
    Exit,
    Facts,
    OutputCallback,
    Sample,
    Stream,
    Workspace,
    WorkspaceRequest,
)

FAKE_HEAD = "0" * 40


@dataclass(frozen=True)
class Play:
    """One scripted attempt: what it prints, then how it ends (``hang``: until stopped)."""

    code: int = 0
    output: Sequence[bytes] = ()
    steps: int = 3  # scheduler checkpoints the attempt takes while "running"
    hang: bool = False
    changed: tuple[str, ...] = ()  # what ``collect`` reports the attempt changed
    marker: bool = False  # whether ``collect`` finds the done marker


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

    def call_later(self, seconds: float, callback: Callable[[], object]) -> Callable[[], object]:
        """Like ``sleep``: at the loop's next turn, the time moves on by ``seconds`` and
        ``callback`` is called."""
        self.slept.append(seconds)

        def fire() -> None:
            self.now += seconds
            callback()

        return asyncio.get_running_loop().call_soon(fire).cancel


@dataclass
class FakeHandle:
    """Plays one ``Play``; ``stop`` ends a hanging play as if SIGTERM had killed it."""

    play: Play
    on_output: OutputCallback
    ref: str
    pid: int | None = None
    stopped: anyio.Event = field(default_factory=anyio.Event)

    def exited(self) -> Exit | None:
        return None  # a play ends only when it is waited for

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


class FakeExecutor:
    """Plays scripted attempts per task (the last play repeats) and records what happened.

    ``verify`` scripts the exit codes of a task's verify runs (the last repeats); ``memory`` is
    the memory the executor reports available, ``limit`` the most it could ever have;
    ``leftovers`` are references ``sweep`` finds still running.
    """

    def __init__(
        self,
        plays: Mapping[str, Sequence[Play]],
        default: Play = Play(),
        *,
        verify: Mapping[str, Sequence[int]] | None = None,
        memory: Callable[[], int] = lambda: 1 << 40,
        leftovers: Sequence[str] = (),
        limit: int | None = None,
    ) -> None:
        self.plays = plays
        self.default = default
        self.verify = verify or {}
        self.memory = memory
        self.leftovers = set(leftovers)
        self.limit = limit  # what capacity_limit says (None: cannot tell)
        self.running = 0
        self.max_running = 0
        self.log: list[tuple[str, str, int]] = []  # ("start" | "end" | "verify", task, attempt)
        self.specs: list[AttemptSpec] = []
        self.prepared: list[WorkspaceRequest] = []
        self.swept: list[tuple[str, tuple[str, ...]]] = []
        self._verify_runs: dict[str, int] = {}
        self._refs = itertools.count(1)

    def capacity_problem(self, memory: int) -> str | None:
        if memory <= 0 or self.memory() >= memory:
            return None
        return "waiting for memory: scripted"

    def capacity_limit(self) -> int | None:
        return self.limit

    def confinement_problem(self) -> str | None:
        return "a scripted executor confines nothing"

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        self.prepared.append(request)
        await anyio.lowlevel.checkpoint()
        if request.branch is None:
            return Workspace(request.repo, None, None)
        return Workspace(request.path, request.branch, FAKE_HEAD, created=True)

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun:
        await anyio.lowlevel.checkpoint()
        return Begun(FAKE_HEAD)

    def _play(self, spec: AttemptSpec) -> Play:
        plays = self.plays.get(spec.task_id, [self.default])
        return plays[min(spec.attempt, len(plays)) - 1]

    @asynccontextmanager
    async def start(self, spec: AttemptSpec, on_output: OutputCallback) -> AsyncIterator[FakeHandle]:
        if spec.prompt_file is None:  # a verify run: no prompt
            codes = self.verify.get(spec.task_id, [0])
            n = self._verify_runs[spec.task_id] = self._verify_runs.get(spec.task_id, 0) + 1
            self.log.append(("verify", spec.task_id, spec.attempt))
            yield FakeHandle(Play(code=codes[min(n, len(codes)) - 1]), on_output, ref=f"verify-{n}")
            return
        play = self._play(spec)
        self.specs.append(spec)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        self.log.append(("start", spec.task_id, spec.attempt))
        try:
            yield FakeHandle(play, on_output, ref=f"fake-{next(self._refs)}")
        finally:
            self.running -= 1
            self.log.append(("end", spec.task_id, spec.attempt))

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        plays = self.plays.get(request.task_id, [self.default])
        play = plays[min(request.attempt, len(plays)) - 1]
        await anyio.lowlevel.checkpoint()
        diff = DiffStats(
            1 if play.changed else 0, len(play.changed), len(play.changed), 0, play.changed, False
        )
        return Facts(play.marker, False, play.changed, diff)

    async def sweep(self, prefix: str, refs: Sequence[str], grace: float) -> int:
        self.swept.append((prefix, tuple(refs)))
        found = self.leftovers & set(refs)
        self.leftovers -= found
        return len(found)

    async def version(self, argv: Sequence[str], env: Mapping[str, str], home: str | None = None) -> str:
        return "fake 1.0"
