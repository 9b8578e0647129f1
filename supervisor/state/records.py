"""The run's record as enums and frozen dataclasses: runs, task runs and attempts.

A task run's life is a small state machine, spelled out in ``TRANSITIONS``; the run state
(``supervisor.engine.runstate``, the only writer of these records) asks ``check_transition``
before it persists a change, so an impossible move fails loudly in tests instead of corrupting a
night's record.
"""

from __future__ import annotations

import enum
import secrets
import time
from dataclasses import dataclass


class TaskState(enum.StrEnum):
    """Where one task of one run stands."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    NOT_RUN = "not_run"
    INTERRUPTED = "interrupted"
    CONFLICT = "conflict"  # succeeded, but its branch conflicts in the integration branch

    @property
    def finished(self) -> bool:
        """True for the states a run can end in."""
        return self not in {TaskState.PENDING, TaskState.RUNNING}


class RunStatus(enum.StrEnum):
    """Where one run (one invocation of ``pagent-run``) stands."""

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    INTERRUPTED = "interrupted"
    # Never stored: what a view shows for a run recorded as running whose supervisor is gone.
    ABANDONED = "abandoned"


TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    # A pending task with earlier attempts (waiting to retry) can be failed or interrupted.
    TaskState.PENDING: frozenset(
        {TaskState.RUNNING, TaskState.NOT_RUN, TaskState.FAILED, TaskState.INTERRUPTED}
    ),
    TaskState.RUNNING: frozenset(
        {TaskState.PENDING, TaskState.SUCCEEDED, TaskState.FAILED, TaskState.INTERRUPTED}
    ),
    # --retry-failed takes every unfinished-or-failed task back to pending.
    TaskState.FAILED: frozenset({TaskState.PENDING}),
    TaskState.NOT_RUN: frozenset({TaskState.PENDING}),
    TaskState.INTERRUPTED: frozenset({TaskState.PENDING}),
    TaskState.SUCCEEDED: frozenset({TaskState.CONFLICT}),
    # A conflict is resolved by hand (merge the task branch yourself); --retry-failed keeps it.
    TaskState.CONFLICT: frozenset(),
}


def check_transition(old: TaskState, new: TaskState) -> None:
    """Raise ``ValueError`` unless a task may go from ``old`` to ``new``."""
    if new != old and new not in TRANSITIONS[old]:
        raise ValueError(f"illegal task transition {old} -> {new}")


# What an agent kind may measure per attempt that has a column of its own in the state.
METRIC_COLUMNS = ("session_id", "turns", "cost_usd", "api_ms", "tokens_in", "tokens_out", "model")


@dataclass(frozen=True)
class RunRecord:
    """One invocation of ``pagent-run`` (``--retry-failed`` continues an existing one)."""

    run_id: str
    plan_key: str
    plan_name: str
    plan_path: str
    started_at: float
    status: RunStatus = RunStatus.RUNNING
    ended_at: float | None = None
    exit_code: int | None = None
    pid: int | None = None
    pid_started: float | None = None
    repo: str | None = None
    base_commit: str | None = None
    agent_version: str | None = None  # e.g. `claude --version`, recorded by the preflight
    note: str | None = None  # why the run stopped launching tasks early, if it did
    integration_branch: str | None = None
    overlaps: str | None = None  # JSON list of {"tasks": [a, b], "paths": [...]}
    integration: str | None = None  # JSON list of merge results, in merge order
    publish: str | None = None  # JSON publish record of the integration branch ([publish])
    notifications: str | None = None  # JSON list: each notification sent, per target ([notify])
    worktrees: str | None = None  # the run's directory of worktrees (<worktree_root>/<run id>)
    integration_tip: str | None = None  # where pagent left the integration branch (reserved: base)
    moved_refs: str | None = None  # JSON list of {ref, before, after, task, attempt}: refs others moved
    # Whether the run's tasks that asked for the sandbox got it: "bubblewrap" or why not
    # ("off: ..."); None when no task asked.
    sandbox: str | None = None


@dataclass(frozen=True)
class TaskRecord:
    """One task of one run: its state, workspace and the outcome of its latest attempt."""

    run_id: str
    task_id: str
    wave: int
    wave_name: str
    state: TaskState = TaskState.PENDING
    attempts: int = 0
    branch: str | None = None
    worktree: str | None = None
    reason: str | None = None
    exit_code: int | None = None
    started_at: float | None = None
    ended_at: float | None = None
    start_commit: str | None = None  # where the task's branch started (base, or a dependency)
    diff: str | None = None  # JSON DiffStats after the latest attempt
    conflicts: str | None = None  # JSON list of paths, for state "conflict"
    publish: str | None = None  # JSON publish record of the task's branch: pushed, pull request
    # The branch's commit as pagent last recorded it: where the run reserved it, then after each
    # attempt; None when the branch was not reserved (runs of older versions, a name git refused).
    tip: str | None = None
    # When the workspace's ``setup`` hooks last succeeded; None: not yet, or the workspace was
    # created anew since (they run again before its next attempt).
    set_up_at: float | None = None


@dataclass(frozen=True)
class AttemptRecord:
    """One try of one task: its process, its log and why it ended, plus the latest heartbeat."""

    run_id: str
    task_id: str
    number: int
    started_at: float
    log_path: str
    cookie: str
    ended_at: float | None = None
    pid: int | None = None  # for display only: the executor's ``ref`` identifies the attempt
    pid_started: float | None = None  # no longer written; kept for databases of older versions
    exit_code: int | None = None
    reason: str | None = None
    cpu_percent: float | None = None
    rss: int | None = None
    procs: int | None = None
    last_output_at: float | None = None
    sampled_at: float | None = None
    note: str | None = None  # live status from the agent kind ("retrying API, 529, attempt 2/10")
    session_id: str | None = None
    turns: int | None = None
    cost_usd: float | None = None
    api_ms: float | None = None
    tokens_in: int | None = None
    tokens_out: int | None = None
    detail: str | None = None  # JSON: what the agent kind reported beyond the columns
    ref: str | None = None  # the executor's reference to the attempt (see supervisor.seam)
    result: str | None = None  # JSON: the agent's structured result (``result_schema``)
    model: str | None = None  # the model(s) that answered ("a, b" after a switch), as the agent said
    answer: str | None = None  # a person's answer to this attempt's question (``pagent answer``)


def new_run_id(now: float | None = None) -> str:
    """A new run id, "20261124-020000.123-ab12": UTC time to the millisecond (so ids sort by
    start time), plus random hex against collisions."""
    now = time.time() if now is None else now
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
    millis = int(now * 1000) % 1000
    return f"{stamp}.{millis:03d}-{secrets.token_hex(2)}"
