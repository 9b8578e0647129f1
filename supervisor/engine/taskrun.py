"""One task's life inside a run: dependencies, workspace, attempts, checks, retries.

``run_task`` is started by the runner for every pending task of a wave. It waits for the task's
dependencies, creates (or reuses) its worktree, then loops: wait for memory and a slot, run an
attempt, check its worktree, and let the retry policy decide. Shared state (records, slots,
spend) lives on the ``Runner``; every change goes through ``Runner.set_task``, which persists it
before anything acts on it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio

from supervisor.agents.claude import RATE_LIMITED
from supervisor.agents.resets import reset_in
from supervisor.engine import events, policy
from supervisor.engine.attempt import AttemptResult, run_attempt
from supervisor.engine.spec import build_spec
from supervisor.errors import GitError
from supervisor.plan.model import Task
from supervisor.results import checks
from supervisor.state.records import INTERRUPTED, METRIC_COLUMNS, AttemptRecord, TaskState, check_transition
from supervisor.workspace import facts
from supervisor.workspace.worktree import ensure_worktree

if TYPE_CHECKING:
    from supervisor.engine.runner import Runner


async def run_task(runner: Runner, task: Task) -> None:
    """Drive ``task`` to a final state for this invocation (see the module docstring)."""
    settings = task.settings
    kind = runner.plan.agents[settings.agent].kind
    started = runner.clock.monotonic()
    for dep in task.depends_on:
        if not await runner.until_stopped(runner.finished[dep].wait):
            runner.give_up(task.id, TaskState.NOT_RUN, INTERRUPTED)
            return
        state = runner.records[dep].state
        if state not in (TaskState.SUCCEEDED, TaskState.CONFLICT):
            runner.give_up(task.id, TaskState.NOT_RUN, f"dependency {dep} {state.value}")
            return
    try:
        cwd = await _prepare_workdir(runner, task)
    except (GitError, OSError) as exc:
        runner.give_up(task.id, TaskState.FAILED, f"worktree: {exc}")
        return
    tries = failures = rate_limited = 0
    while True:
        if not await runner.until_stopped(runner.admit, task):
            break
        async with runner.limiter:
            if runner.stop_requested.is_set():
                break
            if (why := runner.launch_blocked(kind)) is not None:
                runner.give_up(task.id, TaskState.FAILED if tries else TaskState.NOT_RUN, why)
                return
            tries += 1
            result = await _attempt(runner, task, cwd)
        number = runner.records[task.id].attempts
        if result.succeeded or result.reason == INTERRUPTED:
            state = TaskState.SUCCEEDED if result.succeeded else TaskState.INTERRUPTED
            _finish(runner, task.id, state, result, started)
            return
        rate_limited += result.reason == RATE_LIMITED
        decision = policy.decide(
            result.reason,
            failures=failures + 1,
            rate_limited=rate_limited,
            settings=settings,
            reset_in=reset_in(result.metrics, runner.clock.time()),
            rng=runner.rng,
        )
        failures += decision.counted
        if decision.stop_kind:
            runner.stop_kind(kind, result)
        if decision.retry and not runner.stop_requested.is_set():
            runner.set_task(task.id, state=TaskState.PENDING, reason=result.reason)
            runner.emit(events.AttemptFailed(task.id, number, result.reason, decision.delay))
            if await runner.until_stopped(runner.clock.sleep, decision.delay):
                continue
            break
        runner.emit(events.AttemptFailed(task.id, number, result.reason, None))
        _finish(runner, task.id, TaskState.FAILED, result, started)
        return
    # Stopped while waiting (for memory, a slot or a retry): nothing of it is running now.
    runner.give_up(task.id, TaskState.INTERRUPTED if tries else TaskState.NOT_RUN, INTERRUPTED)


async def _prepare_workdir(runner: Runner, task: Task) -> Path:
    """Create (or reuse) the task's worktree and return the agent's working directory."""
    record = runner.records[task.id]
    if task.settings.isolation == "worktree":
        assert record.worktree is not None
        assert record.branch is not None
        path = Path(record.worktree)
        # A stacked task starts from its dependency's branch (which has succeeded by now).
        start = runner.records[task.depends_on[0]].branch if task.stack else None
        async with runner.git_lock:
            await anyio.to_thread.run_sync(
                ensure_worktree,
                runner.workspace.repo,
                path,
                record.branch,
                start or runner.workspace.base_commit,
            )
        if record.start_commit is None:
            start_commit = runner.workspace.base_commit
            if start is not None:
                start_commit = await anyio.to_thread.run_sync(facts.head, path)
            runner.set_task(task.id, start_commit=start_commit)
    else:
        path = runner.workspace.repo
    cwd = path / task.settings.workdir if task.settings.workdir else path
    cwd.mkdir(parents=True, exist_ok=True)
    return cwd


async def _attempt(runner: Runner, task: Task, cwd: Path) -> AttemptResult:
    """Run one attempt of ``task`` and its checks; persist its beginning and its end."""
    record = runner.records[task.id]
    number = record.attempts + 1
    log_path = runner.dir / "logs" / f"{task.id}.{number}.log"
    previous = runner.store.attempts(runner.run.run_id, task.id)[-1:] if number > 1 else []
    worktree = Path(record.worktree) if task.settings.isolation == "worktree" and record.worktree else None
    spec = build_spec(
        runner.plan,
        runner.run,
        task,
        number=number,
        cwd=cwd,
        branch=record.branch,
        worktree=record.worktree,
        run_dir=runner.dir,
        previous=previous[0] if previous else None,
        base_env=runner.agent_env(task.settings.agent),
    )
    head_before = None
    if worktree is not None:
        checks.remove_marker(worktree, task)
        head_before = await anyio.to_thread.run_sync(facts.head, worktree)
    now = runner.clock.time()
    attempt = AttemptRecord(
        run_id=runner.run.run_id,
        task_id=task.id,
        number=number,
        started_at=now,
        log_path=str(log_path),
        cookie=spec.cookie,
    )
    # Persist the attempt (and its cookie) before the process exists: a crash right after the
    # launch still leaves enough to find and stop it.
    check_transition(record.state, TaskState.RUNNING)
    changes: dict[str, Any] = {
        "state": TaskState.RUNNING,
        "attempts": number,
        "reason": None,
        "started_at": record.started_at or now,
    }
    runner.store.add_attempt(attempt, **changes)
    runner.records[task.id] = replace(record, **changes)
    result = await run_attempt(
        spec=spec,
        kind=runner.plan.agents[task.settings.agent].kind,
        settings=task.settings,
        log_path=log_path,
        launcher=runner.launcher,
        clock=runner.clock,
        store=runner.store,
        stop_requested=runner.stop_requested,
        emit=runner.emit,
    )
    metrics = dict(result.metrics)
    if worktree is not None and head_before is not None and result.exit is not None:
        verdict = await checks.check(
            task=task,
            worktree=worktree,
            cwd=cwd,
            head_before=head_before,
            start_commit=runner.records[task.id].start_commit or runner.workspace.base_commit,
            succeeded=result.succeeded,
            reason=result.reason,
            number=number,
            launcher=runner.launcher,
            spec=spec,
            log_path=log_path,
            metrics=metrics,
        )
        result = replace(result, succeeded=verdict.succeeded, reason=verdict.reason)
        metrics.update(verdict.detail)
        if verdict.diff is not None:
            runner.set_task(task.id, diff=json.dumps(verdict.diff.to_dict()))
    exit_code = None if result.exit is None else result.exit.code
    columns = {key: metrics.pop(key, None) for key in METRIC_COLUMNS}
    runner.store.update_attempt(
        runner.run.run_id,
        task.id,
        number,
        ended_at=runner.clock.time(),
        exit_code=exit_code,
        reason=result.reason,
        detail=json.dumps(metrics) if metrics else None,
        **columns,
    )
    if columns["cost_usd"] is not None:
        runner.spent += columns["cost_usd"]
        runner.emit(events.CostUpdate(runner.spent))
    runner.records[task.id] = replace(runner.records[task.id], exit_code=exit_code)
    return result


def _finish(runner: Runner, task_id: str, state: TaskState, result: AttemptResult, started: float) -> None:
    exit_code = None if result.exit is None else result.exit.code
    runner.set_task(
        task_id, state=state, reason=result.reason, exit_code=exit_code, ended_at=runner.clock.time()
    )
    runner.emit(
        events.TaskFinished(
            task_id,
            state,
            runner.records[task_id].attempts,
            result.reason,
            runner.clock.monotonic() - started,
        )
    )
