"""One task's life inside a run: dependencies, workspace, attempts, checks, retries.

A ``TaskRun`` is made by the runner for every pending task of a wave and driven by ``run``. It
waits for the task's dependencies, has the executor prepare the task's workspace, then loops:
wait for capacity and a slot (the ``LaunchGate``), run an attempt, check its workspace, and let
the retry policy decide. It works only through explicit collaborators: the run state (the only
writer of records), the gate, the executor, the task's agent kind, a clock and the stop request.
Ending an attempt and moving the task on is one transaction.

Each attempt is recorded with the session id pagent chose for it (kinds with ``session_args``)
before anything starts. Before the agent, the workspace's hooks run in the attempt's log
(``supervisor.engine.hooks``): ``setup`` when the workspace is new (or its setup has not
succeeded yet), then ``before_attempt``; a failing hook fails the attempt (``setup: ...``)
without starting the agent. After it, an MCP server that did not start fails an attempt of a
task with ``mcp = "required"`` (``mcp-failed``), then the structured result is judged
(``supervisor.results.structured``: ``nothing_to_do`` lifts ``require_changes``), then the
checks of ``supervisor.engine.inspection``.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from supervisor.agents.base import AgentKind
from supervisor.agents.resets import reset_in
from supervisor.engine import events, policy
from supervisor.engine.around import after_agent, before_agent, new_session, resumable, settle_session
from supervisor.engine.attempt import AttemptResult, run_attempt, run_verify
from supervisor.engine.clock import Clock
from supervisor.engine.gate import LaunchGate, Stop, Ticket
from supervisor.engine.inspection import inspect
from supervisor.engine.logfile import DiskReserve, LogFile
from supervisor.engine.runstate import RunState
from supervisor.engine.spec import build_spec, write_prompt
from supervisor.engine.telemetry import otel_variables
from supervisor.errors import GitError
from supervisor.plan.model import Plan, Task
from supervisor.reasons import Reason
from supervisor.results.checks import Verdict, verified
from supervisor.seam import (
    AttemptKey,
    Begun,
    Executor,
    Workspace,
    WorkspaceRequest,
)
from supervisor.state.layout import Layout
from supervisor.state.records import METRIC_COLUMNS, AttemptRecord, TaskState
from supervisor.workspace.refs import pins


@dataclass(frozen=True)
class RunContext:
    """What every task run of one run shares and never changes."""

    plan: Plan
    layout: Layout
    repo: Path  # the plan's repository
    base_commit: str  # where new task branches start
    reserve: DiskReserve | None = None  # given up when the state's disk is full
    # Why the executor cannot confine attempts (None: it can); tasks with ``sandbox = "auto"``
    # then run unconfined (``sandbox = true`` was refused before the run began).
    unconfined: str | None = None
    # Whether each attempt's prompt file and log are made on the store's writing thread, with the
    # attempt's record (creating a file costs the kernel 0.05-0.25 ms on a busy ext4): the loop
    # goes on with the other attempts meanwhile. False: made in the task's own thread (tests on
    # a virtual clock, which a real thread would skew).
    files_off_loop: bool = False
    # The supervisor's OpenTelemetry variables (``supervisor.engine.telemetry``), read once.
    otel: Mapping[str, str] = field(default_factory=lambda: otel_variables(os.environ))


@dataclass(frozen=True)
class _Ended:
    """One attempt's end, not yet persisted: what the policy needs and what to write."""

    result: AttemptResult
    number: int
    attempt_changes: dict[str, Any]
    task_changes: dict[str, Any]


def _make_files(
    prompts: Sequence[tuple[Path, bytes]], log_path: Path, on_full: Callable[[], object] | None
) -> LogFile:
    """Write an attempt's prompt file and create its log (in a worker thread)."""
    for path, data in prompts:
        write_prompt(path, data)
    return LogFile(log_path, on_full)


class _NotBegun(Exception):
    """No attempt could begin: ``reason`` why (``None``: a stop came first)."""

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        self.reason = reason


class _Recorder:
    """The run state, bound to one attempt (``supervisor.engine.attempt.AttemptRecorder``)."""

    def __init__(self, state: RunState, task_id: str, number: int) -> None:
        self._state, self._task_id, self._number = state, task_id, number

    def running(self, ref: str, pid: int | None) -> None:
        self._state.attempt_running(self._task_id, self._number, ref, pid)

    def heartbeat(self, **sample: Any) -> None:
        self._state.heartbeat(self._task_id, self._number, **sample)


class TaskRun:
    """Drives one task to a final state for this invocation (see the module docstring)."""

    def __init__(
        self,
        task: Task,
        *,
        context: RunContext,
        state: RunState,
        gate: LaunchGate,
        executor: Executor,
        kind: AgentKind,
        clock: Clock,
        stop: Stop,
        emit: Callable[[events.Event], None],
        rng: random.Random,
    ) -> None:
        self.task = task
        self._ctx = context
        self._state = state
        self._gate = gate
        self._executor = executor
        self._kind = kind
        self._clock = clock
        self._stop = stop
        self._emit = emit
        self._rng = rng

    async def run(self) -> None:
        """Drive the task to a final state for this invocation."""
        task, settings = self.task, self.task.settings
        started = self._clock.monotonic()
        for dep in task.depends_on:
            if not await self._stop.unless(self._state.wait_finished, dep):
                self._give_up(TaskState.NOT_RUN, Reason.INTERRUPTED.value)
                return
            state = self._state[dep].state
            if state not in (TaskState.SUCCEEDED, TaskState.CONFLICT):
                self._give_up(TaskState.NOT_RUN, Reason.DEPENDENCY.detail(f"{dep} {state.value}"))
                return
        broken: str | None = None  # why the workspace cannot be made ready for an attempt
        workspace: Workspace | None = None
        try:
            workspace = await self._prepare()
        except _NotBegun as exc:  # git failed, or a stop came while the workspace was prepared
            broken = exc.reason
        tries = failures = rate_limited = 0
        while workspace is not None:
            if not await self._stop.unless(self._gate.capacity, settings.min_free_memory, task.id):
                break
            async with self._gate.slot(task.id, settings.agent) as ticket:
                if self._stop.requested:
                    break
                if (why := self._gate.blocked(self._kind.name)) is not None:
                    self._give_up(TaskState.FAILED if tries else TaskState.NOT_RUN, why)
                    return
                try:
                    ended = await self._attempt(workspace)
                except _NotBegun as exc:  # stopped, or the workspace is broken: no attempt
                    broken = exc.reason
                    break
                tries += 1
                self._tell_gate(ticket, ended.result)
            result = ended.result
            if result.succeeded or result.reason == Reason.INTERRUPTED:
                state = TaskState.SUCCEEDED if result.succeeded else TaskState.INTERRUPTED
                await self._end(ended, state, started)
                return
            rate_limited += Reason.of(result.reason) is Reason.RATE_LIMITED
            decision = policy.decide(
                result.reason,
                failures=failures + 1,
                rate_limited=rate_limited,
                settings=settings,
                reset_in=reset_in(result.metrics, self._clock.time()),
                rng=self._rng,
            )
            failures += decision.counted
            if decision.stop_kind:
                self._stop_kind(result)
            if decision.retry and not self._stop.requested:
                await self._persist(ended, {"state": TaskState.PENDING, "reason": result.reason})
                # A gated retry waits at its agent's rate-limit gate, not on a timer of its own.
                delay = 0.0 if decision.gated else decision.delay
                shown = self._gate.rate_gate(settings.agent).closed_for() if decision.gated else delay
                self._emit(events.AttemptFailed(task.id, ended.number, result.reason, shown))
                if await self._stop.unless(self._clock.sleep, delay):
                    continue
                break
            self._emit(events.AttemptFailed(task.id, ended.number, result.reason, None))
            await self._end(ended, TaskState.FAILED, started)
            return
        if broken is not None:
            self._give_up(TaskState.FAILED, broken)
            return
        # Stopped while waiting (for capacity, a slot or a retry): nothing of it is running now.
        self._give_up(TaskState.INTERRUPTED if tries else TaskState.NOT_RUN, Reason.INTERRUPTED.value)

    async def _prepare(self) -> Workspace:
        """Have the executor create (or reuse) the task's workspace; record where it started and
        the branch's commit. ``_NotBegun`` if it cannot, or a stop came first (the executor's git
        dies with the cancelled await)."""
        task, record = self.task, self._state[self.task.id]
        isolated = task.settings.isolation == "worktree"
        # A stacked task starts from its dependency's branch as pagent recorded it (the
        # dependency has succeeded by now): what the task builds on is known and recorded.
        dep = self._state[task.depends_on[0]] if task.stack else None
        start = (dep.tip or dep.branch) if dep is not None else None
        request = WorkspaceRequest(
            repo=self._ctx.repo,
            path=Path(record.worktree) if isolated and record.worktree else self._ctx.repo,
            branch=record.branch if isolated else None,
            start=start or self._ctx.base_commit,
            workdir=task.settings.workdir,
            expect=record.tip if isolated else None,
            fresh=record.attempts == 0,
            pins=pins(self._state.run_id, task.id) if isolated else None,
            kind=task.settings.workspace,
            copy=task.settings.copy if isolated else (),
        )
        try:
            workspace = await self._stop.before(self._executor.prepare, request)
        except (GitError, OSError) as exc:
            raise _NotBegun(Reason.WORKSPACE.detail(exc)) from None
        if workspace is None:
            raise _NotBegun(None)
        if isolated:
            changes: dict[str, Any] = {"tip": workspace.head}
            if record.start_commit is None:
                start_commit = workspace.head if start is not None else self._ctx.base_commit
                changes["start_commit"] = start_commit or self._ctx.base_commit
            if workspace.created and record.set_up_at is not None:
                changes["set_up_at"] = None  # a new workspace: its setup runs again
            self._state.set_task(task.id, **changes)
        return workspace

    def _cwd(self, workspace: Workspace) -> Path:
        """The agent's working directory: the workspace, or ``workdir`` inside it (the executor
        made it when it prepared the workspace)."""
        if workspace.cwd is not None:
            return workspace.cwd
        workdir = self.task.settings.workdir
        return workspace.path / workdir if workdir else workspace.path

    async def _attempt(self, workspace: Workspace) -> _Ended:
        """Run one attempt and its checks; persist its beginning, return its end. ``_NotBegun``
        when the workspace cannot be made ready (or a stop came first): no attempt exists."""
        task, settings, ctx = self.task, self.task.settings, self._ctx
        record = self._state[task.id]
        number = record.attempts + 1
        run_id = self._state.run_id
        key = AttemptKey(ctx.plan.uid, run_id, task.id, number)
        earlier = self._state.attempts(task.id) if number > 1 else []
        answer = next((a.answer for a in reversed(earlier) if a.answer), None)
        session_id = new_session(self._kind)
        isolated = workspace.branch is not None
        prompts: list[tuple[Path, bytes]] = []
        spec = build_spec(
            ctx.plan,
            task,
            self._kind,
            key=key,
            cwd=self._cwd(workspace),
            workspace=workspace,
            branch=record.branch,
            prompt_path=ctx.layout.prompt(run_id, task.id, number),
            environ=ctx.otel,
            previous=resumable(earlier),
            confined=settings.sandbox is not False and ctx.unconfined is None,
            session_id=session_id,
            answer=answer,
            writer=lambda path, data: prompts.append((path, data)),
        )
        log_path = ctx.layout.log(run_id, task.id, number)
        begun = await self._begin(workspace) if isolated else None
        make = partial(
            _make_files, prompts, log_path, ctx.reserve.release if ctx.reserve is not None else None
        )
        now = self._clock.time()
        attempt = AttemptRecord(
            run_id,
            task.id,
            number,
            started_at=now,
            log_path=str(log_path),
            cookie=str(key),
            session_id=session_id,  # known before the agent's first byte, whatever happens then
        )
        if ctx.files_off_loop:
            # The prompt file and the log, made on the store's writing thread just before the
            # attempt's record, in the same hop (``RunState.begin_attempt_after``).
            log = await self._state.begin_attempt_after(attempt, now, make, LogFile.close)
        else:
            log = make()
            try:
                await self._state.begin_attempt(attempt, now)
            except BaseException:
                log.close()
                raise
        task_changes: dict[str, Any] = {}
        output: Any = None
        try:
            failed = await before_agent(
                task,
                state=self._state,
                spec=spec,
                log=log,
                executor=self._executor,
                stop=self._stop,
                clock=self._clock,
            )
            if failed is not None:
                result = AttemptResult(succeeded=False, reason=failed, exit=None)
            else:
                result = await run_attempt(
                    spec=spec,
                    parser=self._kind.parser(),
                    settings=settings,
                    log=log,
                    executor=self._executor,
                    clock=self._clock,
                    recorder=_Recorder(self._state, task.id, number),
                    stop_requested=self._stop,
                    emit=self._emit,
                )
            metrics = dict(result.metrics)
            output = metrics.pop("structured_output", None)
            if settings.result_schema is None:
                output = None  # a result nobody asked for (Codex's final message read as JSON)
            result, changes_optional = after_agent(settings, result, output, metrics)
            checked = task
            if changes_optional:  # the agent found nothing to do: no change is required
                checked = replace(task, settings=replace(settings, require_changes=False))
            if begun is not None and result.exit is not None:
                inspected = await inspect(
                    task=checked,
                    state=self._state,
                    executor=self._executor,
                    stop=self._stop,
                    emit=self._emit,
                    workspace=workspace,
                    spec=spec,
                    result=result,
                    begun=begun,
                    start_commit=self._state[task.id].start_commit or ctx.base_commit,
                    log=log,
                )
                result = inspected.result
                metrics.update(inspected.detail)
                task_changes.update(inspected.task_changes)
            elif result.exit is not None and result.succeeded and settings.verify:
                # isolation = "none": nothing to inspect, but verify runs where the agent ran.
                code = await run_verify(
                    argv=settings.verify, spec=spec, settings=settings, log=log, executor=self._executor
                )
                verdict = verified(Verdict(True, result.reason), code)
                result = replace(result, succeeded=verdict.succeeded, reason=verdict.reason)
                metrics.update(verdict.detail)
        finally:
            log.close()
        if log.failure is not None and result.reason != Reason.INTERRUPTED:
            # The attempt's record is incomplete (its log could not be written): it failed.
            result = replace(result, succeeded=False, reason=log.failure)
            metrics["log_dropped_bytes"] = log.dropped
        exit_code = None if result.exit is None else result.exit.code
        columns = {name: metrics.pop(name, None) for name in METRIC_COLUMNS}
        settle_session(columns, metrics, ran=result.exit is not None, chosen=attempt.session_id)
        attempt_changes = {
            "ended_at": self._clock.time(),
            "exit_code": exit_code,
            "reason": result.reason,
            "detail": json.dumps(metrics) if metrics else None,
            "result": json.dumps(output) if output is not None else None,
            **columns,
        }
        task_changes["exit_code"] = exit_code
        return _Ended(result, number, attempt_changes, task_changes)

    async def _begin(self, workspace: Workspace) -> Begun:
        """The executor's ``begin`` (cancelled by a stop); ``_NotBegun`` if it fails or a stop
        came first."""
        try:
            begun = await self._stop.before(self._executor.begin, workspace, self.task.settings.done_marker)
        except (GitError, OSError) as exc:
            raise _NotBegun(Reason.WORKSPACE.detail(exc)) from None
        if begun is None:
            raise _NotBegun(None)
        return begun

    def _tell_gate(self, ticket: Ticket, result: AttemptResult) -> None:
        """Report the attempt's end to its agent's rate-limit gate: a rate limit closes it."""
        close_for = policy.gate_delay(
            result.reason,
            closure=ticket.closure,
            settings=self.task.settings,
            reset_in=reset_in(result.metrics, self._clock.time()),
            rng=self._rng,
        )
        ticket.ended(result.succeeded, close_for)

    async def _persist(self, ended: _Ended, task_changes: dict[str, Any]) -> None:
        """End the attempt and move the task on, in one transaction."""
        changes = {**ended.task_changes, **task_changes}
        await self._state.end_attempt(self.task.id, ended.number, ended.attempt_changes, changes)
        if ended.attempt_changes.get("cost_usd") is not None:
            self._emit(events.CostUpdate(self._state.spent))

    async def _end(self, ended: _Ended, state: TaskState, started: float) -> None:
        """The task's final state for this invocation, with its last attempt's end."""
        reason = ended.result.reason
        await self._persist(ended, {"state": state, "reason": reason, "ended_at": self._clock.time()})
        attempts = self._state[self.task.id].attempts
        duration = self._clock.monotonic() - started
        self._emit(events.TaskFinished(self.task.id, state, attempts, reason, duration))

    def _give_up(self, state: TaskState, reason: str) -> None:
        """End the task without (another) attempt."""
        record = self._state.give_up(self.task.id, state, reason)
        self._emit(events.TaskFinished(self.task.id, state, record.attempts, reason, None))

    def _stop_kind(self, result: AttemptResult) -> None:
        """Start no further task of this agent kind: each would fail like this one."""
        name = self._kind.name
        if not self._gate.stop_kind(name, result.reason):
            return
        text = str(result.metrics.get("result_text") or "").strip().splitlines()
        detail = f" ({text[0][:200]})" if text else ""
        note = f"{name} agents stopped: {result.reason}{detail}; no further {name} task was started"
        self._state.update_run(note=note)
        self._emit(events.Notice(note))
        self._emit(events.StoppedEarly(str(Reason.of(result.reason) or result.reason), note))
