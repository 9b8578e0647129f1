"""Waves, concurrency and retries: drives a run's pending tasks to their final states.

The runner owns the order of things. Waves run one after another; inside a wave every pending
task runs as a ``TaskRun``, at most ``jobs`` agents at a time (the ``LaunchGate``), offered slots
longest expected first unless the plan says ``order = "plan"`` (``supervisor.engine.order``,
from the plan's earlier runs; the estimates go out as a ``Schedule`` event); a failed
attempt is retried with backoff while its wave is still open; when a task of a wave fails for
good, the later waves' tasks become ``not_run``. After each wave it asks
``supervisor.results.integration`` what the wave produced (overlaps, merges) and records it.
With a ``Publisher`` (``[publish]``), a task's branch is published as soon as the task has
succeeded, and the integration branch after each wave that merged into it.
Every change goes through the run state, which persists it before anything acts on it. The
runner never prints: it emits ``supervisor.engine.events``.

Containment: whatever one task run raises that nobody expected (a full disk, a run directory an
agent replaced, a bug) ends that task ``failed`` with a reason (``supervisor.reasons.mishap``),
its open attempt ended; it never cancels the wave's other tasks nor leaves a task ``running``.
The same holds for the work after a wave and for publishing: their surprises are notices.
"""

from __future__ import annotations

import contextlib
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from supervisor.agents.base import Kinds
from supervisor.engine import events, order
from supervisor.engine.clock import Clock, SystemClock
from supervisor.engine.gate import LaunchGate, Stop
from supervisor.engine.runstate import RunState
from supervisor.engine.taskrun import RunContext, TaskRun
from supervisor.errors import StateError
from supervisor.plan.model import Task, Wave
from supervisor.reasons import Reason, mishap
from supervisor.results.integration import Integration, after_wave
from supervisor.seam import Executor
from supervisor.state.records import RunStatus, TaskState
from supervisor.workspace.git import in_thread, owned_by
from supervisor.workspace.refs import integration_pins

if TYPE_CHECKING:
    from supervisor.engine.publishing import Publisher


class Runner:
    """Executes one run whose records are in ``state``."""

    def __init__(
        self,
        context: RunContext,
        state: RunState,
        executor: Executor,
        kinds: Kinds,
        *,
        worktrees: Path | None = None,
        clock: Clock | None = None,
        emit: Callable[[events.Event], None] = lambda event: None,
        rng: random.Random | None = None,
        retry: bool = False,
        memory_poll: float = 2.0,
        publisher: Publisher | None = None,
    ) -> None:
        self.context = context
        self.plan = context.plan
        self.state = state
        self.executor = executor
        self.kinds = kinds
        self.worktrees = worktrees  # this run's directory of worktrees (<worktree_root>/<run id>)
        self.clock: Clock = clock or SystemClock()
        self.emit = emit
        self.rng = rng or random.Random()
        self.retry = retry
        self.publisher = publisher
        self.stop = Stop()
        self.unrecorded: list[str] = []  # tasks whose end the store could not take (a full disk)
        self.gate = LaunchGate(
            self.plan.jobs,
            executor,
            self.clock,
            emit,
            max_cost=self.plan.max_cost_usd,
            spent=lambda: self.state.spent,
            poll=memory_poll,
            stop=self.stop,
            gates={name: agent.gate for name, agent in self.plan.agents.items()},
        )

    @property
    def dir(self) -> Path:
        """This run's directory."""
        return self.context.layout.run_dir(self.state.run_id)

    def interrupt(self) -> None:
        """Start nothing new and stop every running attempt; ``execute`` then returns."""
        self.stop.request()

    async def execute(self) -> RunStatus:
        """Run every pending task, wave by wave; return (and persist) the run's final status.

        Should the run itself be unable to go on (its own records, say), every task that has not
        ended does (failed, or not_run if it never started), the run fails and one notice says
        why; a store that cannot be written at all (``StateError``) is raised once that is done.

        Every git call of the run carries ``PAGENT_COOKIE=<plan uid>:git:<run id>``, so that the
        next run's recovery finds what a killed supervisor's git left running."""
        try:
            with owned_by(f"{self.plan.uid}:git:{self.state.run_id}"):
                return await self._execute()
        except Exception as exc:
            reason = mishap(exc)
            if reason == Reason.DISK_FULL and self.context.reserve is not None:
                self.context.reserve.release()
            self.emit(events.Notice(f"the run could not go on: {reason}"))
            now = self.clock.time()
            for task_id, record in list(self.state.records.items()):
                if not record.state.finished:
                    never = record.state is TaskState.PENDING and not record.attempts
                    state = TaskState.NOT_RUN if never else TaskState.FAILED
                    self.state.fail_task(task_id, reason, now, state)
            with contextlib.suppress(StateError):
                self.state.update_run(status=RunStatus.FAILED, ended_at=now)
            if isinstance(exc, StateError):
                raise
            return RunStatus.FAILED

    async def _execute(self) -> RunStatus:
        records = self.state.records
        pending = sum(r.state is TaskState.PENDING for r in records.values())
        self.emit(events.RunStarted(self.state.run_id, self.plan.name, self.dir, pending, self.retry))
        expected = order.expected_durations(self.state.history())
        ids = {task_id for task_id, record in records.items() if record.state is TaskState.PENDING}
        schedule = order.schedule(self.plan, ids, expected)
        self.emit(schedule)
        blocked_by: str | None = None
        for wave in self.plan.waves:
            todo = [t for t in wave.tasks if records[t.id].state is TaskState.PENDING]
            if blocked_by is not None or self.stop.requested:
                why = (
                    Reason.INTERRUPTED.value
                    if self.stop.requested
                    else Reason.EARLIER_WAVE.detail(blocked_by)
                )
                for task in todo:
                    record = self.state.give_up(task.id, TaskState.NOT_RUN, why)
                    self.emit(events.TaskFinished(task.id, TaskState.NOT_RUN, record.attempts, why, None))
                continue
            if todo:
                self.emit(self._arrange(wave, todo, schedule))
                async with anyio.create_task_group() as tg:
                    for task in todo:
                        tg.start_soon(self._run_task, task.id)
            # A conflict does not hold later waves back: the task's own work succeeded.
            ok = (TaskState.SUCCEEDED, TaskState.CONFLICT)
            failed = [t.id for t in wave.tasks if records[t.id].state not in ok]
            if failed:
                blocked_by = ", ".join(failed)
            if todo and not self.stop.requested:
                try:
                    await self._after_wave(wave)
                except Exception as exc:  # the tasks' own outcomes stand
                    self.emit(events.Notice(f"after wave {wave.name}: {mishap(exc)}"))
        return self._finish()

    def _arrange(self, wave: Wave, todo: list[Task], schedule: events.Schedule) -> events.WaveStarted:
        """Put ``todo`` in the schedule's order (they start in it) and rank the gate's slots by
        it (retries too; with ``order = "plan"`` first come, first served); the wave's start."""
        planned = next((w.tasks for w in schedule.waves if w.index == wave.index), ())
        at = {p.task_id: i for i, p in enumerate(planned)}
        todo.sort(key=lambda task: at.get(task.id, len(at)))
        if self.plan.order != "plan":
            self.gate.rank(at)
        guess = order.forecast(self.plan.jobs, planned)
        known = guess.unknown < len(planned)
        return events.WaveStarted(
            wave.index, wave.name, len(todo), guess.seconds if known else None, guess.unknown
        )

    async def _run_task(self, task_id: str) -> None:
        """Drive one task; publish its branch once it has succeeded (not while stopping)."""
        try:
            await self._task_run(task_id).run()
        except Exception as exc:  # contained: see the module docstring
            self._contain(task_id, exc)
            return
        if (
            self.publisher is not None
            and self.state[task_id].state is TaskState.SUCCEEDED
            and not self.stop.requested
        ):
            try:
                await self.publisher.task(task_id)
            except Exception as exc:  # publishing never fails a task
                self.emit(events.Notice(f"{task_id}: publishing failed: {mishap(exc)}", task_id))

    def _contain(self, task_id: str, exc: Exception) -> None:
        """End ``task_id`` failed after its run raised ``exc`` (see the module docstring)."""
        reason = mishap(exc)
        if reason == Reason.DISK_FULL and self.context.reserve is not None:
            self.context.reserve.release()  # room for this very record
        was_finished = self.state[task_id].state.finished
        record, persisted = self.state.fail_task(task_id, reason, self.clock.time())
        if not persisted:
            self.unrecorded.append(task_id)
            self.emit(events.Notice(f"{task_id}: cannot record its end in the state database", task_id))
        if not was_finished:
            self.emit(events.TaskFinished(task_id, record.state, record.attempts, reason, None))

    def _task_run(self, task_id: str) -> TaskRun:
        task = self.plan.task(task_id)
        return TaskRun(
            task,
            context=self.context,
            state=self.state,
            gate=self.gate,
            executor=self.executor,
            kind=self.kinds[self.plan.agents[task.settings.agent].kind],
            clock=self.clock,
            stop=self.stop,
            emit=self.emit,
            rng=self.rng,
        )

    def _finish(self) -> RunStatus:
        states = [r.state for r in self.state.records.values()]
        if self.stop.requested:
            status = RunStatus.INTERRUPTED
        elif all(state is TaskState.SUCCEEDED for state in states):
            status = RunStatus.SUCCEEDED
        else:
            status = RunStatus.FAILED
        self.state.update_run(status=status, ended_at=self.clock.time())
        return status

    async def _after_wave(self, wave: Wave) -> None:
        """Record the overlaps so far and the merges of this wave into the integration branch."""
        records = self.state.records
        paths = {
            task.id: list(json.loads(record.diff).get("paths", []))
            for task in self.plan.tasks
            if (record := records.get(task.id)) is not None
            and record.state is TaskState.SUCCEEDED
            and record.diff
        }
        succeeded = [
            (t.id, records[t.id].branch or "")
            for t in wave.tasks
            if records[t.id].state is TaskState.SUCCEEDED
        ]
        run = self.state.run
        branch = run.integration_branch
        integration = None
        if branch is not None and self.worktrees is not None:
            integration = Integration(
                self.context.repo,
                self.worktrees / ".integration",
                branch,
                self.context.base_commit,
                expect=run.integration_tip,
                pins=integration_pins(run.run_id),
            )
        # In a worker thread whose git dies when a stop cancels the wait.
        found = await self.stop.before(in_thread, after_wave, paths, succeeded, integration, wave.name)
        if found is None:
            return
        self.state.update_run(overlaps=json.dumps([o.to_dict() for o in found.overlaps]))
        if found.reset is not None:
            self.emit(events.Notice(f"integration: {found.reset}"))
        wave_ids = {task.id for task in wave.tasks}
        for overlap in found.overlaps:
            if wave_ids & set(overlap.tasks):
                first, second = overlap.tasks
                self.emit(
                    events.Notice(
                        f"overlap: {first} and {second} both change " + ", ".join(overlap.paths[:5])
                    )
                )
        if found.skipped is not None:
            self.emit(
                events.Notice(f"integration into {branch} skipped for wave {wave.name}: {found.skipped}")
            )
        if integration is None or not found.merges:
            return
        merges = json.loads(self.state.run.integration or "[]")
        for result in found.merges:
            merges.append(
                {
                    "task": result.task_id,
                    "branch": result.branch,
                    "merged": result.merged,
                    "conflicts": list(result.conflicts),
                    "wave": wave.name,
                }
            )
            if not result.merged:
                self.state.set_task(
                    result.task_id,
                    state=TaskState.CONFLICT,
                    reason=Reason.CONFLICT.value,
                    conflicts=json.dumps(list(result.conflicts)),
                )
                where = ", ".join(result.conflicts) or "?"
                self.emit(
                    events.Notice(
                        f"{result.task_id}: conflicts with {branch} in {where}; not merged", result.task_id
                    )
                )
        self.state.update_run(
            integration=json.dumps(merges), integration_tip=found.tip or run.integration_tip
        )
        if self.publisher is not None and not self.stop.requested:
            await self.publisher.integration()
