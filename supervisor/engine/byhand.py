"""``pagent publish``, ``pagent notify`` and ``pagent answer``: a finished run's hand-off, by hand.

They take the plan's lock first (as ``pagent clean`` does), so they refuse while a run of the
plan is active (``LockedError``, exit 75) and no run starts while they record. They record
through the run state like a run does. ``notify_test`` sends a test message and needs no run at
all. ``answer_task`` keeps a person's answer on the latest attempt of a task that needs input;
the next ``--retry-failed`` continues the task with it (``supervisor.engine.spec``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.engine import events
from supervisor.engine.notifying import Notifier
from supervisor.engine.publishing import Publisher
from supervisor.engine.runstate import RunState
from supervisor.errors import PlanError, UsageError
from supervisor.handoff import payload
from supervisor.handoff.notify import TargetResult, notify
from supervisor.plan.model import Plan
from supervisor.reasons import Reason
from supervisor.state.layout import Layout
from supervisor.state.lock import PlanLock
from supervisor.state.records import TaskState
from supervisor.state.store import Store
from supervisor.state.views import find_run, needs_person
from supervisor.workspace.git import remote_problem, resolve_repo


@asynccontextmanager
async def _run_state(plan: Plan, run_id: str | None, doing: str) -> AsyncIterator[RunState]:
    """The state of ``plan``'s latest (or given) run, with the plan's lock held."""
    layout = Layout.of(plan)
    if not layout.database.exists():
        raise UsageError(f"{plan.path.name}: no run yet")
    with PlanLock(layout.lock_file) as lock:
        lock.acquire(f"{plan.path.name}: cannot {doing}")
        store = Store(layout.database)
        try:
            run = find_run(plan, store, run_id)
            yield RunState(store, run, [task.id for task in plan.tasks])
        finally:
            store.close()


async def publish_run(
    plan: Plan, run_id: str | None, emit: Callable[[events.Event], None] = lambda event: None
) -> dict[str, Any]:
    """Publish every succeeded task's branch of the run (pushing only what changed, reusing
    recorded pull requests) and its integration branch; return the run's view afterwards."""
    if not plan.publish.enabled or plan.publish.remote is None:
        raise UsageError(f"{plan.path.name}: the plan has no [publish] table")
    repo = resolve_repo(plan)
    if problem := remote_problem(repo.root, plan.publish.remote):
        raise PlanError(f"{plan.path.name}: publish.remote: {problem}")
    async with _run_state(plan, run_id, "publish") as state:
        root = Path(state.run.repo) if state.run.repo else repo.root
        await Publisher(plan, state, Layout.of(plan), root, emit).catch_up(everything=True)
        return state.view()


async def notify_run(
    plan: Plan,
    run_id: str | None,
    emit: Callable[[events.Event], None] = lambda event: None,
) -> list[TargetResult]:
    """Send the run-finished notification of the run (as the run itself would) and record it."""
    if not plan.notify.enabled:
        raise UsageError(f"{plan.path.name}: the plan has no [notify] urls or command")
    async with _run_state(plan, run_id, "notify") as state:
        report = Layout.of(plan).report(state.run_id)
        notifier = Notifier(plan.notify, state, emit)
        return await notifier.run_finished(state.view(), report if report.exists() else None)


async def notify_test(plan: Plan) -> list[TargetResult]:
    """Send a test message to every target of ``[notify]``; nothing is recorded."""
    if not plan.notify.enabled:
        raise UsageError(f"{plan.path.name}: the plan has no [notify] urls or command")
    return await notify(plan.notify, payload.check_message(plan.name))


@dataclass(frozen=True)
class Answered:
    """An answer recorded: for which attempt, what the task had asked, the answer it replaced."""

    task_id: str
    attempt: int
    asked: list[str]  # ``views.needs_person``: its question or the tool calls it was denied
    replaced: str | None = None


async def answer_task(plan: Plan, task_id: str, text: str, run_id: str | None) -> Answered:
    """Record ``text`` as the answer to ``task_id`` of the latest (or given) run, which must have
    ended ``needs-input`` (``UsageError``, exit 2, otherwise); answering again replaces it."""
    text = text.strip()
    if not text:
        raise UsageError("the answer is empty")
    if task_id not in {task.id for task in plan.tasks}:
        raise UsageError(f"{plan.path.name}: no task {task_id!r} in the plan")
    async with _run_state(plan, run_id, "record an answer") as state:
        if task_id not in state.records:
            raise UsageError(f"{plan.path.name}: run {state.run_id} has no task {task_id!r}")
        view = state.task_view(task_id)
        if (
            state[task_id].state is not TaskState.FAILED
            or Reason.of(view["reason"]) is not Reason.NEEDS_INPUT
        ):
            raise UsageError(
                f"{plan.path.name}: {task_id} does not need input: it is {view['state']}"
                + (f" ({view['reason']})" if view["reason"] else "")
            )
        latest = state.attempts(task_id)[-1]
        asked = needs_person({**view, "answer": None})
        state.record_answer(task_id, latest.number, text)
        return Answered(task_id, latest.number, asked, latest.answer)
