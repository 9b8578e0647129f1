"""One invocation of ``pagent-run``: lock, repair, begin the run, execute it, write the summary.

``execute_plan`` is what the CLI calls inside ``anyio.run``, with the executor and the agent
kinds it composed. It handles SIGINT and SIGTERM: the runner starts nothing new, stops every
running attempt and records it ``interrupted``; the result then carries exit code 130 or 143.
At the end it writes ``summary.json``, has the report written (by the ``report`` callback the
CLI gives), sends the run-finished notification naming it, and rewrites both with what the
notifications did (the hand-off: ``supervisor.engine.publishing``, ``.notifying``).
"""

from __future__ import annotations

import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from supervisor.agents.base import Kinds
from supervisor.engine import events
from supervisor.engine.logfile import DiskReserve
from supervisor.engine.notifying import Notifier
from supervisor.engine.runner import Runner
from supervisor.engine.runs import new_run, recover, reopen_run
from supervisor.engine.runstate import RunState
from supervisor.engine.taskrun import RunContext
from supervisor.errors import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_SIGINT,
    EXIT_SIGTERM,
    PagentError,
    PlanError,
    StateError,
    UsageError,
)
from supervisor.plan.across import check_memory, check_sandbox, wants_sandbox
from supervisor.plan.model import Plan
from supervisor.reasons import leaves
from supervisor.seam import AttemptKey, Executor
from supervisor.state import history
from supervisor.state.layout import Layout
from supervisor.state.lock import PlanLock
from supervisor.state.records import RunRecord, RunStatus, TaskState
from supervisor.state.store import Store
from supervisor.state.views import find_run, indented_json, run_view
from supervisor.workspace.git import RepoInfo, owned_by, remote_problem, resolve_repo
from supervisor.workspace.worktree import default_worktree_root


@dataclass(frozen=True)
class RunResult:
    """What an invocation ended with: the run, its view (as in summary.json) and the exit code."""

    run_id: str
    status: RunStatus
    exit_code: int
    view: dict[str, Any]


class Interrupted(PagentError):
    """SIGINT or SIGTERM arrived before the run began: nothing was started."""


# Writes the run's report.html from its view at the given path (the CLI's ``write_report``).
Report = Callable[[dict[str, Any], Path], object]


@dataclass(frozen=True)
class _Request:
    """Everything one invocation was asked to do, resolved."""

    plan: Plan
    layout: Layout
    repo: RepoInfo
    executor: Executor
    kinds: Kinds
    retry_failed: bool
    run_id: str | None
    emit: Callable[[events.Event], None]
    memory_poll: float
    report: Report | None
    reserve: DiskReserve
    unconfined: str | None = None  # why attempts cannot be confined here (tasks asked for it)
    fallback: tuple[str, ...] = ()  # the ``sandbox = "auto"`` tasks that run unconfined


@dataclass
class _Signals:
    """SIGINT/SIGTERM received so far, and the runner to interrupt once there is one."""

    received: list[int] = field(default_factory=list)
    runner: Runner | None = None

    @property
    def exit_code(self) -> int | None:
        """130 or 143 after the first signal, else ``None``."""
        if not self.received:
            return None
        return EXIT_SIGINT if self.received[0] == signal.SIGINT else EXIT_SIGTERM


async def execute_plan(
    plan: Plan,
    *,
    executor: Executor,
    kinds: Kinds,
    retry_failed: bool = False,
    run_id: str | None = None,
    emit: Callable[[events.Event], None] = lambda event: None,
    memory_poll: float = 2.0,
    report: Report | None = None,
) -> RunResult:
    """Run ``plan`` (or retry its latest / given run) to the end; see the module docstring.

    ``report`` writes the run's report.html (called once summary.json is written, before the
    run-finished notification, which names the report's path).
    """
    repo = resolve_repo(plan)  # exit 2 on a wrong repo or base, before anything is created
    remote = plan.publish.remote if plan.publish.auto else None
    if remote is not None and (problem := remote_problem(repo.root, remote)):
        raise PlanError(f"{plan.path.name}: publish.remote: {problem}")
    check_memory(plan, executor.capacity_limit())  # exit 2: it would wait for memory for ever
    # exit 2 for sandbox = true where nothing can confine attempts; "auto" falls back, said below
    unconfined = executor.confinement_problem() if wants_sandbox(plan) else None
    fallback = tuple(check_sandbox(plan, unconfined))
    layout = Layout.of(plan)
    if retry_failed and not layout.database.exists():
        raise UsageError(f"{plan.path.name}: no run yet")
    reserve = DiskReserve(layout.reserve)
    request = _Request(
        plan,
        layout,
        repo,
        executor,
        kinds,
        retry_failed,
        run_id,
        emit,
        memory_poll,
        report,
        reserve,
        unconfined,
        fallback,
    )
    layout.ensure()
    signals = _Signals()
    with PlanLock(layout.lock_file) as lock:
        lock.acquire(plan.path.name)
        reserve.hold()
        try:
            store = Store(layout.database)
            try:
                result = await _with_signals(request, store, signals)
            except BaseExceptionGroup as group:
                # Task groups (nested ones too) wrap what the core raised; the CLI wants it bare.
                raise _bare(group) from None
            finally:
                store.close()
        finally:
            reserve.release()
    if result is None:
        raise Interrupted(f"{plan.path.name}: interrupted before any task started", signals.exit_code)
    return result


def _bare(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """What to raise for ``group``: its first ``PagentError`` (one line for the CLI), else its
    only exception, else the group itself."""
    found = leaves(group)
    for leaf in found:
        if isinstance(leaf, PagentError):
            return leaf
    return found[0] if len(found) == 1 else group


async def _with_signals(request: _Request, store: Store, signals: _Signals) -> RunResult | None:
    """Run under the plan's lock with SIGINT/SIGTERM handled; ``None`` if a signal came first.

    Signals are ours from the start: during recovery and preflight a signal simply ends the
    invocation (nothing has started); once the runner exists it stops every agent first.
    """
    result: RunResult | None = None
    async with anyio.create_task_group() as tg:

        async def on_signals() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                async for signum in received:
                    if not signals.received:
                        name = signal.Signals(signum).name
                        request.emit(events.Notice(f"received {name}: stopping every agent"))
                    signals.received.append(signum)
                    if signals.runner is not None:
                        signals.runner.interrupt()
                    else:
                        tg.cancel_scope.cancel()

        tg.start_soon(on_signals)
        # Git run while setting up (branch reservation, recovery's reads) is marked as the plan's
        # too; the runner marks the run's own with its id.
        with owned_by(f"{request.plan.uid}:git:setup"):
            result = await _run(request, store, signals)
        tg.cancel_scope.cancel()
    return result


async def _preflight(request: _Request, store: Store, earlier: RunRecord | None) -> str:
    """Check every agent with ``preflight`` on that this invocation will use; their versions."""
    plan = request.plan
    done = (
        set()
        if earlier is None
        else {
            r.task_id
            for r in store.tasks(earlier.run_id)
            if r.state in (TaskState.SUCCEEDED, TaskState.CONFLICT)
        }
    )
    tasks = [task for task in plan.tasks if task.id not in done]
    names = sorted(n for n in {task.settings.agent for task in tasks} if plan.agents[n].preflight)
    found: dict[str, str] = {}
    failed: list[PagentError] = []

    def notice(message: str) -> None:
        request.emit(events.Notice(message))

    async def check(name: str, cancel: anyio.CancelScope) -> None:
        agent = plan.agents[name]
        max_wait = max(task.settings.max_wait for task in tasks if task.settings.agent == name)
        key = AttemptKey(plan.uid, "preflight", name, 1)
        try:
            found[name] = await request.kinds[agent.kind].preflight(
                agent, request.executor, key, max_wait=max_wait, notice=notice
            )
        except PagentError as exc:  # the first failure stops the others: the run will not start
            failed.append(exc)
            cancel.cancel()

    # Side by side: each can take a minute of retries, and a night mixing agents must not wait
    # for the sum of them before its first task.
    async with anyio.create_task_group() as tg:
        for name in names:
            tg.start_soon(check, name, tg.cancel_scope)
    if failed:
        raise failed[0]
    return "; ".join(f"{name}: {found[name]}" for name in names)


async def _run(request: _Request, store: Store, signals: _Signals) -> RunResult:
    """Repair, begin the run (or reopen it), execute it, write its summary."""
    plan, repo, emit = request.plan, request.repo, request.emit
    grace = max(task.settings.kill_grace for task in plan.tasks)
    for message in await recover(plan, store, request.executor, time.time(), grace):
        emit(events.Notice(message))
    earlier = find_run(plan, store, request.run_id) if request.retry_failed else None
    versions = await _preflight(request, store, earlier)
    state: RunState
    if earlier is not None:
        state = reopen_run(plan, store, earlier, repo)
    else:
        state = new_run(plan, store, repo, time.time())
    try:
        return await _execute(request, store, signals, state, versions=versions, earlier=earlier)
    except (StateError, BaseExceptionGroup) as exc:
        # The run was begun: it did not complete (its record ends like a crash's; the next
        # pagent-run of the plan repairs it). Exit 1, not 2.
        bare = _bare(exc) if isinstance(exc, BaseExceptionGroup) else exc
        if isinstance(bare, StateError):
            raise StateError(str(bare), EXIT_FAILED, disk_full=bare.disk_full) from None
        raise


async def _execute(
    request: _Request,
    store: Store,
    signals: _Signals,
    state: RunState,
    *,
    versions: str,
    earlier: RunRecord | None,
) -> RunResult:
    """Execute the begun run ``state`` and write its summary and report."""
    plan, repo, emit, layout = request.plan, request.repo, request.emit, request.layout
    if versions:
        state.update_run(agent_version=versions)
    if wants_sandbox(plan):
        sandbox = "bubblewrap" if request.unconfined is None else f"off: {request.unconfined}"
        if request.fallback:
            sandbox += f" (sandbox = 'auto': {', '.join(request.fallback)} ran unconfined)"
            emit(events.Notice(f"sandbox {sandbox}"))
        state.update_run(sandbox=sandbox)
    if plan.keep_runs is not None and earlier is None:
        pruned = history.prune(plan, store, plan.keep_runs)
        if pruned:
            emit(events.Notice(f"keep_runs = {plan.keep_runs}: forgot {len(pruned)} older run(s)"))
    run = state.run
    context = RunContext(
        plan,
        layout,
        repo.root,
        run.base_commit or repo.base_commit,
        request.reserve,
        request.unconfined,
        files_off_loop=True,
    )
    notifier = Notifier(plan.notify, state, emit)

    def emit_all(event: events.Event) -> None:
        emit(event)
        notifier.observe(event)

    publisher = None
    if plan.publish.auto and plan.publish.enabled:
        # Imported here: a run that publishes nothing (no ``[publish] remote``: a publisher would
        # do nothing at all) never loads the hand-off's push and pull-request code.
        from supervisor.engine.publishing import Publisher  # noqa: PLC0415

        publisher = Publisher(plan, state, layout, repo.root, emit_all)
    runner = Runner(
        context,
        state,
        request.executor,
        request.kinds,
        worktrees=Path(run.worktrees) if run.worktrees else default_worktree_root(plan, repo) / run.run_id,
        emit=emit_all,
        retry=request.retry_failed,
        memory_poll=request.memory_poll,
        publisher=publisher,
    )
    signals.runner = runner
    if signals.received:  # a signal arrived while the run was being set up
        runner.interrupt()
    async with notifier.sending():
        status = await runner.execute()
        if publisher is not None and request.retry_failed and not signals.received:
            await publisher.catch_up()  # what an earlier invocation could not publish
        exit_code = signals.exit_code
        if exit_code is None:
            exit_code = EXIT_OK if status is RunStatus.SUCCEEDED else EXIT_FAILED
        final = state.update_run(exit_code=exit_code)
        view = run_view(store, final)
        _write_summary(layout.summary(run.run_id), view, emit)
        report = _write_report(request, view, layout.report(run.run_id))
        await notifier.run_finished(view, report)
    if state.run.notifications != final.notifications:  # what was sent belongs in both
        view = run_view(store, state.run)
        _write_summary(layout.summary(run.run_id), view, emit)
        if report is not None:
            _write_report(request, view, report)
    return RunResult(run.run_id, status, exit_code, view)


def _write_summary(path: Path, view: dict[str, Any], emit: Callable[[events.Event], None]) -> bool:
    """Write ``summary.json`` (the run's view) to ``path``, whole or not at all (a temporary file
    renamed over it). When even that fails (a full disk, a run directory an agent replaced), one
    notice says so; the summary still goes to stdout, and ``pagent status --json`` reads the same
    view from the state database."""
    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(indented_json(view) + "\n", encoding="utf-8")
        temporary.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        emit(events.Notice(f"cannot write {path}: {exc.strerror or exc}; 'pagent status --json' shows it"))
        return False
    return True


def _write_report(request: _Request, view: dict[str, Any], path: Path) -> Path | None:
    """Have the report written at ``path``; ``None`` when there is no writer or it failed."""
    if request.report is None:
        return None
    try:
        request.report(view, path)
    except OSError as exc:
        request.emit(events.Notice(f"cannot write {path}: {exc.strerror or exc}"))
        return None
    return path
