"""What the runner reports while it works. It never prints; the CLI renders these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class RunStarted:
    """A run (new, or continued by ``--retry-failed``) begins."""

    run_id: str
    plan_name: str
    run_dir: Path
    tasks: int
    retry: bool


@dataclass(frozen=True)
class WaveStarted:
    """A wave begins; ``tasks`` is how many of its tasks will run now."""

    index: int
    name: str
    tasks: int


@dataclass(frozen=True)
class AttemptStarted:
    """An agent process was started for a task."""

    task_id: str
    attempt: int
    pid: int | None  # for display; None where the executor has no local pid
    workdir: Path


@dataclass(frozen=True)
class AttemptFailed:
    """An attempt failed; ``retry_in`` is the backoff before the next one, ``None`` for none."""

    task_id: str
    attempt: int
    reason: str
    retry_in: float | None


@dataclass(frozen=True)
class TaskFinished:
    """A task reached its final state in this invocation."""

    task_id: str
    state: str
    attempts: int
    reason: str | None
    duration: float | None


@dataclass(frozen=True)
class Notice:
    """Something the user should know that is not a task transition (waiting for memory...)."""

    message: str
    task_id: str | None = None


@dataclass(frozen=True)
class Output:
    """The last complete line an agent printed (for a live progress view)."""

    task_id: str
    line: str


@dataclass(frozen=True)
class CostUpdate:
    """The run's recorded spend changed (an attempt reported its cost)."""

    total_usd: float


Event = (
    RunStarted | WaveStarted | AttemptStarted | AttemptFailed | TaskFinished | Notice | Output | CostUpdate
)
