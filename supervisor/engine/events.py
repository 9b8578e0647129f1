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
    """A wave begins; ``tasks`` is how many of its tasks will run now. ``expected``: how long it
    should take (``supervisor.engine.order.forecast``; ``None`` when no task of it has history),
    a lower bound when ``unknown`` of its tasks have none."""

    index: int
    name: str
    tasks: int
    expected: float | None = None
    unknown: int = 0


@dataclass(frozen=True)
class Planned:
    """One pending task in a schedule: its expected duration (the median of its successful
    attempts in the plan's newest runs; ``None``: it has none) and the pending tasks of its wave
    it waits for."""

    task_id: str
    expected: float | None
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class WavePlan:
    """A wave's pending tasks in the order they are offered slots."""

    index: int
    name: str
    tasks: tuple[Planned, ...]


@dataclass(frozen=True)
class Schedule:
    """The run's pending tasks, wave by wave, in the order they are offered slots (``order``:
    the plan's ``order``), with their expected durations; emitted once, after ``RunStarted``."""

    jobs: int
    order: str
    waves: tuple[WavePlan, ...]


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


@dataclass(frozen=True)
class StoppedEarly:
    """The run starts no further task of some kind (``reason``: auth, billing, usage-limit) or at
    all (max-cost); a ``Notice`` with ``message`` is emitted too, for people."""

    reason: str
    message: str


@dataclass(frozen=True)
class Published:
    """A branch was published ([publish]): ``task_id`` is ``None`` for the integration branch.

    ``push`` is the push's status (pushed, up-to-date, rejected, error) and ``detail`` why it
    did not succeed; ``pull_request`` the URL of its pull request, ``pr_problem`` why there is
    none although one was wanted.
    """

    task_id: str | None
    branch: str
    push: str
    detail: str | None
    pull_request: str | None
    pr_problem: str | None


@dataclass(frozen=True)
class Notified:
    """One notification target answered (or did not): ``target`` is masked, ``error`` one line."""

    event: str
    target: str
    ok: bool
    error: str | None
    tries: int


Event = (
    RunStarted
    | Schedule
    | WaveStarted
    | AttemptStarted
    | AttemptFailed
    | TaskFinished
    | Notice
    | Output
    | CostUpdate
    | StoppedEarly
    | Published
    | Notified
)
