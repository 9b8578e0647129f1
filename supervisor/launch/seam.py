"""The seam between the runner and wherever an attempt's process runs.

The runner asks a ``Launcher`` to start one attempt and gets an ``AttemptHandle`` back; it never
touches a process itself. ``LocalLauncher`` (``supervisor.local``) runs attempts as local
subprocesses; a launcher for a distributed engine would implement the same few methods, and the
tests use a scripted fake. A launcher delivers output as raw bytes through ``on_output``; the
runner owns logging and interpretation.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


class Stream(enum.Enum):
    """Which of the agent's output streams a chunk came from."""

    STDOUT = 1
    STDERR = 2


OutputCallback = Callable[[bytes, Stream], None]


@dataclass(frozen=True)
class AttemptSpec:
    """Everything needed to start one attempt, independent of where it runs."""

    run_id: str
    task_id: str
    attempt: int
    argv: tuple[str, ...]
    cwd: Path
    env: Mapping[str, str]  # the complete environment of the agent
    stdin_path: Path  # the prompt; the agent reads it from stdin up to EOF
    cookie: str  # an environment value unique to this attempt, to find its processes again


@dataclass(frozen=True)
class Exit:
    """How an attempt's main process ended: an exit code, or the signal that killed it."""

    code: int | None = None
    signal: int | None = None

    @property
    def signal_name(self) -> str | None:
        """The signal's name ("SIGKILL"), or ``None`` when the process exited."""
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"


@dataclass(frozen=True)
class Sample:
    """One look at an attempt's process tree: CPU seconds used so far, memory, process count."""

    cpu_seconds: float
    rss: int
    procs: int


class AttemptHandle(Protocol):
    """One running attempt. Owned by exactly one runner coroutine."""

    @property
    def pid(self) -> int:
        """The main process's pid (or an engine's equivalent id)."""

    @property
    def pid_started(self) -> float:
        """The main process's start time; with ``pid`` it names the process unambiguously."""

    async def wait(self) -> Exit:
        """Return once the main process has ended."""

    async def stop(self, grace: float) -> None:
        """Stop the whole tree: SIGTERM, up to ``grace`` seconds, then SIGKILL what is left."""

    async def finish(self, grace: float) -> int:
        """After the main process ended: stop every leftover of its tree and collect the
        remaining output, waiting at most ``grace`` for a pipe that a leftover holds open.
        Return how many leftover processes were stopped."""

    def sample(self) -> Sample | None:
        """Measure the tree now; ``None`` when the launcher cannot tell."""


class Launcher(Protocol):
    """Starts attempts. ``start`` is an async context manager: leaving it releases everything."""

    def start(
        self, spec: AttemptSpec, on_output: OutputCallback
    ) -> AbstractAsyncContextManager[AttemptHandle]:
        """Start ``spec``'s process and yield its handle; raise ``OSError`` if it cannot start."""
