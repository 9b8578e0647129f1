"""Waves, concurrency and retries: drives a run's pending tasks to their final states.

The runner owns the order of things. Waves run one after another; inside a wave every pending
task runs, at most ``jobs`` agents at a time (an anyio ``CapacityLimiter``); a failed attempt is
retried with backoff while its wave is still open; when a task of a wave fails for good, the
later waves' tasks become ``not_run``. Every transition is persisted before the action it
announces. The runner never prints: it emits ``supervisor.events``.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio

from supervisor import events, policy, proctree
from supervisor.attempt import AttemptResult, Clock, run_attempt
from supervisor.claude import RATE_LIMITED, seconds_until_reset
from supervisor.command import build_spec
from supervisor.errors import GitError
from supervisor.launcher import Launcher
from supervisor.model import (
    INTERRUPTED,
    MAX_COST,
    METRIC_COLUMNS,
    AttemptRecord,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskState,
    check_transition,
)
from supervisor.plan import Plan, Task
from supervisor.runs import run_directory
from supervisor.store import Store
from supervisor.worktree import ensure_worktree

_MEMORY_POLL = 2.0  # seconds between checks while waiting for free memory


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)


@dataclass(frozen=True)
class Workspace:
    """Where a run's tasks work: the repository, and the commit new worktrees start from."""

    repo: Path
    base_commit: str


class Runner:
    """Executes one run of ``plan`` whose records are already in ``store``."""

    def __init__(
        self,
        plan: Plan,
        run: RunRecord,
        store: Store,
        launcher: Launcher,
        workspace: Workspace,
        *,
        clock: Clock | None = None,
        emit: Callable[[events.Event], None] = lambda event: None,
        rng: random.Random | None = None,
        available_memory: Callable[[], int] = proctree.available_memory,
        retry: bool = False,
    ) -> None:
        self.retry = retry
        self.plan = plan
        self.run = run
        self.store = store
        self.launcher = launcher
        self.workspace = workspace
        self.clock: Clock = clock or SystemClock()
        self.emit = emit
        self.rng = rng or random.Random()
        self.available_memory = available_memory
        self.stop_requested = anyio.Event()
        # Tasks of the run that are no longer in the plan are ignored (documented for --retry-failed).
        wanted = {task.id for task in plan.tasks}
        self.records = {r.task_id: r for r in store.tasks(run.run_id) if r.task_id in wanted}
        self._limiter = anyio.CapacityLimiter(plan.jobs)
        self._git_lock = anyio.Lock()
        self._waiting_for_memory = False
        # The run's recorded spend so far (a retried run keeps its earlier spend).
        self.spent = sum(a.cost_usd or 0.0 for a in store.attempts(run.run_id))
        self.stopped_kinds: dict[str, str] = {}

    @property
    def dir(self) -> Path:
        """This run's directory."""
        return run_directory(self.plan, self.run.run_id)

    def interrupt(self) -> None:
        """Start nothing new and stop every running attempt; ``execute`` then returns."""
        self.stop_requested.set()

    async def execute(self) -> RunStatus:
        """Run every pending task, wave by wave; return (and persist) the run's final status."""
        pending = sum(r.state is TaskState.PENDING for r in self.records.values())
        self.emit(events.RunStarted(self.run.run_id, self.plan.name, self.dir, pending, self.retry))
        blocked_by: str | None = None
        for wave in self.plan.waves:
            todo = [t for t in wave.tasks if self.records[t.id].state is TaskState.PENDING]
            if blocked_by is not None or self.stop_requested.is_set():
                why = (
                    "interrupted"
                    if self.stop_requested.is_set()
                    else f"an earlier wave failed ({blocked_by})"
                )
                for task in todo:
                    self._set(task.id, state=TaskState.NOT_RUN, reason=why)
                    self.emit(
                        events.TaskFinished(
                            task.id, TaskState.NOT_RUN, self.records[task.id].attempts, why, None
                        )
                    )
                continue
            if todo:
                self.emit(events.WaveStarted(wave.index, wave.name, len(todo)))
                async with anyio.create_task_group() as tg:
                    for task in todo:
                        tg.start_soon(self._run_task, task)
            failed = [t.id for t in wave.tasks if self.records[t.id].state is not TaskState.SUCCEEDED]
            if failed:
                blocked_by = ", ".join(failed)
        return self._finish()

    def _finish(self) -> RunStatus:
        states = [r.state for r in self.records.values()]
        if self.stop_requested.is_set():
            status = RunStatus.INTERRUPTED
        elif all(state is TaskState.SUCCEEDED for state in states):
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.FAILED
        self.store.update_run(self.run.run_id, status=status, ended_at=self.clock.time())
        return status

    # -- one task ------------------------------------------------------------------------------

    async def _run_task(self, task: Task) -> None:
        record = self.records[task.id]
        settings = task.settings
        kind = self.plan.agents[settings.agent].kind
        started = self.clock.monotonic()
        try:
            cwd = await self._prepare_workdir(task, record)
        except (GitError, OSError) as exc:
            self._give_up(task.id, TaskState.FAILED, f"worktree: {exc}")
            return
        tries = failures = rate_limited = 0
        while True:
            if not await self._until_stopped(self._admit, task):
                break
            async with self._limiter:
                if self.stop_requested.is_set():
                    break
                if (why := self._launch_blocked(kind)) is not None:
                    self._give_up(task.id, TaskState.FAILED if tries else TaskState.NOT_RUN, why)
                    return
                tries += 1
                result = await self._attempt(task, cwd)
            number = self.records[task.id].attempts
            if result.succeeded or result.reason == INTERRUPTED:
                state = TaskState.SUCCEEDED if result.succeeded else TaskState.INTERRUPTED
                self._finish_task(task.id, state, result, started)
                return
            rate_limited += result.reason == RATE_LIMITED
            decision = policy.decide(
                result.reason,
                failures=failures + 1,
                rate_limited=rate_limited,
                settings=settings,
                reset_in=self._reset_in(result),
                rng=self.rng,
            )
            failures += decision.counted
            if decision.stop_kind:
                self._stop_kind(kind, result)
            if decision.retry and not self.stop_requested.is_set():
                self._set(task.id, state=TaskState.PENDING, reason=result.reason)
                self.emit(events.AttemptFailed(task.id, number, result.reason, decision.delay))
                if await self._until_stopped(self.clock.sleep, decision.delay):
                    continue
                break
            self.emit(events.AttemptFailed(task.id, number, result.reason, None))
            self._finish_task(task.id, TaskState.FAILED, result, started)
            return
        # Stopped while waiting (for memory, a slot or a retry): nothing of it is running now.
        self._give_up(task.id, TaskState.INTERRUPTED if tries else TaskState.NOT_RUN, INTERRUPTED)

    def _launch_blocked(self, kind: str) -> str | None:
        """Why no new attempt of this agent kind may start now, or ``None``."""
        if self.plan.max_cost_usd is not None and self.spent >= self.plan.max_cost_usd:
            return MAX_COST
        return self.stopped_kinds.get(kind)

    def _stop_kind(self, kind: str, result: AttemptResult) -> None:
        """Start no further task of ``kind``: each would fail like this one (auth, usage limit)."""
        if kind in self.stopped_kinds:
            return
        self.stopped_kinds[kind] = result.reason
        text = str(result.metrics.get("result_text") or "").strip().splitlines()
        detail = f" ({text[0][:200]})" if text else ""
        note = f"{kind} agents stopped: {result.reason}{detail}; no further {kind} task was started"
        self.store.update_run(self.run.run_id, note=note)
        self.emit(events.Notice(note))

    def _reset_in(self, result: AttemptResult) -> float | None:
        resets = result.metrics.get("resets")
        return None if not resets else seconds_until_reset(str(resets), self.clock.time())

    def _give_up(self, task_id: str, state: TaskState, reason: str) -> None:
        self._set(task_id, state=state, reason=reason)
        self.emit(events.TaskFinished(task_id, state, self.records[task_id].attempts, reason, None))

    async def _attempt(self, task: Task, cwd: Path) -> AttemptResult:
        record = self.records[task.id]
        number = record.attempts + 1
        log_path = self.dir / "logs" / f"{task.id}.{number}.log"
        previous = self.store.attempts(self.run.run_id, task.id)[-1:] if number > 1 else []
        spec = build_spec(
            self.plan,
            self.run,
            task,
            number=number,
            cwd=cwd,
            worktree=record.worktree,
            run_dir=self.dir,
            previous=previous[0] if previous else None,
        )
        now = self.clock.time()
        attempt = AttemptRecord(
            run_id=self.run.run_id,
            task_id=task.id,
            number=number,
            started_at=now,
            log_path=str(log_path),
            cookie=spec.cookie,
        )
        # Persist the attempt (and its cookie) before the process exists: a crash right after
        # the launch still leaves enough to find and stop it.
        check_transition(record.state, TaskState.RUNNING)
        changes: dict[str, Any] = {
            "state": TaskState.RUNNING,
            "attempts": number,
            "reason": None,
            "started_at": record.started_at or now,
        }
        self.store.add_attempt(attempt, **changes)
        self.records[task.id] = replace(record, **changes)
        result = await run_attempt(
            spec=spec,
            kind=self.plan.agents[task.settings.agent].kind,
            settings=task.settings,
            log_path=log_path,
            launcher=self.launcher,
            clock=self.clock,
            store=self.store,
            stop_requested=self.stop_requested,
            emit=self.emit,
        )
        exit_code = None if result.exit is None else result.exit.code
        metrics = dict(result.metrics)
        columns = {key: metrics.pop(key, None) for key in METRIC_COLUMNS}
        self.store.update_attempt(
            self.run.run_id,
            task.id,
            number,
            ended_at=self.clock.time(),
            exit_code=exit_code,
            reason=result.reason,
            detail=json.dumps(metrics) if metrics else None,
            **columns,
        )
        if columns["cost_usd"] is not None:
            self.spent += columns["cost_usd"]
            self.emit(events.CostUpdate(self.spent))
        self.records[task.id] = replace(self.records[task.id], exit_code=exit_code)
        return result

    def _finish_task(self, task_id: str, state: TaskState, result: AttemptResult, started: float) -> None:
        exit_code = None if result.exit is None else result.exit.code
        self._set(task_id, state=state, reason=result.reason, exit_code=exit_code, ended_at=self.clock.time())
        self.emit(
            events.TaskFinished(
                task_id,
                state,
                self.records[task_id].attempts,
                result.reason,
                self.clock.monotonic() - started,
            )
        )

    async def _prepare_workdir(self, task: Task, record: TaskRecord) -> Path:
        """Create (or reuse) the task's worktree and return the agent's working directory."""
        if task.settings.isolation == "worktree":
            assert record.worktree is not None
            assert record.branch is not None
            path = Path(record.worktree)
            async with self._git_lock:
                await anyio.to_thread.run_sync(
                    ensure_worktree, self.workspace.repo, path, record.branch, self.workspace.base_commit
                )
        else:
            path = self.workspace.repo
        cwd = path / task.settings.workdir if task.settings.workdir else path
        cwd.mkdir(parents=True, exist_ok=True)
        return cwd

    async def _admit(self, task: Task) -> None:
        """Wait until enough memory is free to start another agent (GNU parallel's --memfree)."""
        need = task.settings.min_free_memory
        while self.available_memory() < need:
            if not self._waiting_for_memory:
                self._waiting_for_memory = True
                self.emit(
                    events.Notice(
                        f"waiting for memory: {self.available_memory() // 2**20} MiB available, "
                        f"{need // 2**20} MiB required (min_free_memory)",
                        task.id,
                    )
                )
            await self.clock.sleep(_MEMORY_POLL)
        self._waiting_for_memory = False

    async def _until_stopped(self, wait: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Await ``wait(*args)`` unless a stop is requested first; False if it was."""
        if self.stop_requested.is_set():
            return False
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await self.stop_requested.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await wait(*args)
            tg.cancel_scope.cancel()
        return not self.stop_requested.is_set()

    def _set(self, task_id: str, **changes: Any) -> None:
        """Persist a change of a task run, then apply it in memory."""
        record = self.records[task_id]
        if "state" in changes:
            check_transition(record.state, changes["state"])
        self.store.update_task(self.run.run_id, task_id, **changes)
        self.records[task_id] = replace(record, **changes)
