"""Begin a run: a new one, or the latest one again for ``--retry-failed``; and repair dead ones.

Everything here happens while the plan's lock is held, before any agent starts.
"""

from __future__ import annotations

import os
from pathlib import Path

import psutil

from supervisor.errors import UsageError
from supervisor.launch import proctree
from supervisor.plan.model import Plan, PlanFile, Task
from supervisor.state.records import (
    INTERRUPTED,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskState,
    check_transition,
    new_run_id,
)
from supervisor.state.store import Store
from supervisor.workspace.git import RepoInfo
from supervisor.workspace.worktree import branch_for, default_worktree_root, existing_branches, worktree_path


def _me() -> tuple[int, float]:
    me = psutil.Process(os.getpid())
    return me.pid, me.create_time()


def _task_records(plan: Plan, run_id: str, repo: RepoInfo, tasks: list[Task]) -> list[TaskRecord]:
    """Fresh task runs for ``tasks``, each with its branch and worktree decided."""
    root = default_worktree_root(plan, repo)
    taken = existing_branches(repo.root) if any(t.settings.isolation == "worktree" for t in tasks) else set()
    records = []
    for task in tasks:
        if task.settings.isolation == "worktree":
            branch: str | None = branch_for(plan, task, run_id, taken)
            assert branch is not None
            taken.add(branch)
            worktree = str(worktree_path(root, run_id, task))
        else:
            branch, worktree = None, str(repo.root)
        records.append(
            TaskRecord(
                run_id=run_id,
                task_id=task.id,
                wave=task.wave,
                wave_name=task.wave_name,
                branch=branch,
                worktree=worktree,
            )
        )
    return records


def new_run(plan: Plan, store: Store, repo: RepoInfo, now: float) -> RunRecord:
    """Record a new run of ``plan`` with every task pending."""
    run_id = new_run_id(now)
    while store.run(run_id) is not None:
        run_id = new_run_id(now)
    pid, pid_started = _me()
    run = RunRecord(
        run_id=run_id,
        plan_key=plan.key,
        plan_name=plan.name,
        plan_path=str(plan.path),
        started_at=now,
        pid=pid,
        pid_started=pid_started,
        repo=str(repo.root),
        base_commit=repo.base_commit,
        integration_branch=_integration_branch(plan, run_id, repo),
    )
    store.create_run(run, _task_records(plan, run_id, repo, list(plan.tasks)))
    return run


def _integration_branch(plan: Plan, run_id: str, repo: RepoInfo) -> str | None:
    """The run's integration branch: the plan's name, or that plus the run id if it exists."""
    if plan.integrate_branch is None:
        return None
    taken = existing_branches(repo.root)
    name = plan.integrate_branch
    return name if name not in taken else f"{name}-{run_id}"


def find_run(plan: PlanFile, store: Store, run_id: str | None) -> RunRecord:
    """The run ``run_id`` of ``plan``, or its latest; ``UsageError`` if there is none."""
    if run_id is not None:
        run = store.run(run_id)
        if run is None or run.plan_key != plan.key:
            raise UsageError(f"{plan.path.name}: no run {run_id!r} (see 'pagent runs {plan.path.name}')")
        return run
    run = store.latest_run(plan.key)
    if run is None:
        raise UsageError(f"{plan.path.name}: no run yet")
    return run


def reopen_run(plan: Plan, store: Store, run: RunRecord, repo: RepoInfo) -> RunRecord:
    """Take every task of ``run`` that did not succeed back to pending, for ``--retry-failed``.

    Tasks added to the plan since are added as pending; tasks removed from it are ignored.
    Worktrees and branches of the run are reused; new ones start from the run's base commit.
    """
    records = {r.task_id: r for r in store.tasks(run.run_id)}
    for task in plan.tasks:
        record = records.get(task.id)
        # A conflict is resolved by hand (its agent's work succeeded); it is not rerun.
        if record is not None and record.state not in (TaskState.SUCCEEDED, TaskState.CONFLICT):
            check_transition(record.state, TaskState.PENDING)
            store.update_task(
                run.run_id,
                task.id,
                state=TaskState.PENDING,
                wave=task.wave,
                wave_name=task.wave_name,
                ended_at=None,
            )
    added = [task for task in plan.tasks if task.id not in records]
    if added:
        base = RepoInfo(repo.root, repo.base_ref, run.base_commit or repo.base_commit)
        store.add_tasks(_task_records(plan, run.run_id, base, added))
    pid, pid_started = _me()
    store.update_run(
        run.run_id, status=RunStatus.RUNNING, ended_at=None, exit_code=None, pid=pid, pid_started=pid_started
    )
    found = store.run(run.run_id)
    assert found is not None
    return found


async def recover(plan: Plan, store: Store, grace: float) -> list[str]:
    """Repair what dead runs of ``plan`` left: stop their processes, record their tasks interrupted.

    Called with the plan's lock held, so no run of this plan is alive: every process carrying
    this plan's cookie prefix is a leftover, whatever run it belongs to. Returns one message per
    repaired run.
    """
    messages = []
    procs = {p.pid: p for p in proctree.with_cookie(f"{plan.uid}:")}
    for run in store.runs(plan.key):
        if run.status is not RunStatus.RUNNING:
            continue
        for attempt in store.open_attempts(run.run_id):
            main = proctree.find(attempt.pid, attempt.pid_started)
            if main is not None:
                procs[main.pid] = main
                procs.update((p.pid, p) for p in proctree.descendants(main))
            store.update_attempt(
                run.run_id,
                attempt.task_id,
                attempt.number,
                ended_at=attempt.sampled_at or attempt.started_at,
                reason=INTERRUPTED,
            )
        for record in store.tasks(run.run_id):
            if record.state is TaskState.RUNNING or (record.state is TaskState.PENDING and record.attempts):
                store.update_task(run.run_id, record.task_id, state=TaskState.INTERRUPTED, reason=INTERRUPTED)
            elif record.state is TaskState.PENDING:
                store.update_task(run.run_id, record.task_id, state=TaskState.NOT_RUN, reason=INTERRUPTED)
        store.update_run(run.run_id, status=RunStatus.INTERRUPTED)
        messages.append(
            f"run {run.run_id} had been stopped without cleanup (supervisor pid {run.pid} is gone)"
        )
    if procs:
        await proctree.stop_processes(list(procs.values()), None, grace)
        messages.append(f"stopped {len(procs)} leftover agent process(es) of earlier runs")
    return messages


def run_directory(plan: PlanFile, run_id: str) -> Path:
    """The directory of one run's logs, prompts, summary and report."""
    return plan.state_dir / "runs" / run_id
