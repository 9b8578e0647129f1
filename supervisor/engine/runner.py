"""Waves, concurrency and retries: drives a run's pending tasks to their final states.

The runner owns the order of things. Waves run one after another; inside a wave every pending
task runs, at most ``jobs`` agents at a time (an anyio ``CapacityLimiter``); a failed attempt is
retried with backoff while its wave is still open; when a task of a wave fails for good, the
later waves' tasks become ``not_run``. Every transition is persisted before the action it
announces. The runner never prints: it emits ``supervisor.events``.
"""

from __future__ import annotations

import functools
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio

from supervisor.engine import events
from supervisor.engine.afterwave import after_wave
from supervisor.engine.attempt import AttemptResult, Clock
from supervisor.engine.runs import run_directory
from supervisor.engine.taskrun import run_task
from supervisor.launch import proctree
from supervisor.launch.seam import Launcher
from supervisor.plan.model import Plan, Task
from supervisor.state.records import MAX_COST, RunRecord, RunStatus, TaskState, check_transition
from supervisor.state.store import Store


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
    worktrees: Path | None = None  # this run's directory of worktrees (<worktree_root>/<run id>)


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
        memory_poll: float = 2.0,
    ) -> None:
        self.retry = retry
        self.memory_poll = memory_poll
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
        self.limiter = anyio.CapacityLimiter(plan.jobs)
        self.git_lock = anyio.Lock()
        self._waiting_for_memory = False
        # The run's recorded spend so far (a retried run keeps its earlier spend).
        self.spent = sum(a.cost_usd or 0.0 for a in store.attempts(run.run_id))
        self.stopped_kinds: dict[str, str] = {}
        self._agent_envs: dict[str, dict[str, str]] = {}
        # Set when a task reaches a final state; dependent tasks wait on these.
        self.finished = {task_id: anyio.Event() for task_id in self.records}
        for record in self.records.values():
            if record.state.finished:
                self.finished[record.task_id].set()

    @functools.cached_property
    def dir(self) -> Path:
        """This run's directory."""
        return run_directory(self.plan, self.run.run_id)

    def agent_env(self, name: str) -> dict[str, str]:
        """The environment every attempt of agent ``name`` starts from: the supervisor's own
        with the agent's ``env`` on top, built once per run instead of once per attempt."""
        env = self._agent_envs.get(name)
        if env is None:
            env = self._agent_envs[name] = {**os.environ, **self.plan.agents[name].env}
        return env

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
                    self.give_up(task.id, TaskState.NOT_RUN, why)
                continue
            if todo:
                self.emit(events.WaveStarted(wave.index, wave.name, len(todo)))
                async with anyio.create_task_group() as tg:
                    for task in todo:
                        tg.start_soon(run_task, self, task)
            # A conflict does not hold later waves back: the task's own work succeeded.
            ok = (TaskState.SUCCEEDED, TaskState.CONFLICT)
            failed = [t.id for t in wave.tasks if self.records[t.id].state not in ok]
            if failed:
                blocked_by = ", ".join(failed)
            if todo and not self.stop_requested.is_set():
                await after_wave(self, wave)
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

    async def admit(self, task: Task) -> None:
        """Wait until enough memory is free to start another agent (GNU parallel's --memfree)."""
        need = task.settings.min_free_memory
        while need > 0 and self.available_memory() < need:
            if not self._waiting_for_memory:
                self._waiting_for_memory = True
                self.emit(
                    events.Notice(
                        f"waiting for memory: {self.available_memory() // 2**20} MiB available, "
                        f"{need // 2**20} MiB required (min_free_memory)",
                        task.id,
                    )
                )
            await self.clock.sleep(self.memory_poll)
        self._waiting_for_memory = False

    async def until_stopped(self, wait: Callable[..., Awaitable[Any]], *args: Any) -> bool:
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

    def set_task(self, task_id: str, **changes: Any) -> None:
        """Persist a change of a task run, then apply it in memory."""
        record = self.records[task_id]
        if "state" in changes:
            check_transition(record.state, changes["state"])
        self.store.update_task(self.run.run_id, task_id, **changes)
        self.records[task_id] = replace(record, **changes)
        if self.records[task_id].state.finished:
            self.finished[task_id].set()

    def give_up(self, task_id: str, state: TaskState, reason: str) -> None:
        """End a task that will not (or no longer) run an attempt in this invocation."""
        self.set_task(task_id, state=state, reason=reason)
        self.emit(events.TaskFinished(task_id, state, self.records[task_id].attempts, reason, None))

    def launch_blocked(self, kind: str) -> str | None:
        """Why no new attempt of this agent kind may start now, or ``None``."""
        if self.plan.max_cost_usd is not None and self.spent >= self.plan.max_cost_usd:
            return MAX_COST
        return self.stopped_kinds.get(kind)

    def stop_kind(self, kind: str, result: AttemptResult) -> None:
        """Start no further task of ``kind``: each would fail like this one (auth, usage limit)."""
        if kind in self.stopped_kinds:
            return
        self.stopped_kinds[kind] = result.reason
        text = str(result.metrics.get("result_text") or "").strip().splitlines()
        detail = f" ({text[0][:200]})" if text else ""
        note = f"{kind} agents stopped: {result.reason}{detail}; no further {kind} task was started"
        self.store.update_run(self.run.run_id, note=note)
        self.emit(events.Notice(note))
