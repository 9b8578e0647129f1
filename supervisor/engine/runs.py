"""Begin a run: a new one, or the latest one again for ``--retry-failed``; and repair dead ones.

Everything here happens while the plan's lock is held, before any agent starts, and every record
is written through the run state (``supervisor.engine.runstate``).
"""

from __future__ import annotations

import os

from supervisor.engine.runstate import RunState
from supervisor.plan.model import Plan, Task
from supervisor.seam import AttemptKey, Executor
from supervisor.state.records import RunRecord, RunStatus, TaskRecord, new_run_id
from supervisor.state.store import Store
from supervisor.workspace.git import RepoInfo
from supervisor.workspace.worktree import branch_for, default_worktree_root, existing_branches, worktree_path


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


def new_run(plan: Plan, store: Store, repo: RepoInfo, now: float) -> RunState:
    """Record a new run of ``plan`` with every task pending."""
    run_id = new_run_id(now)
    while store.run(run_id) is not None:
        run_id = new_run_id(now)
    run = RunRecord(
        run_id=run_id,
        plan_key=plan.key,
        plan_name=plan.name,
        plan_path=str(plan.path),
        started_at=now,
        pid=os.getpid(),
        repo=str(repo.root),
        base_commit=repo.base_commit,
        integration_branch=_integration_branch(plan, run_id, repo),
    )
    return RunState.create(store, run, _task_records(plan, run_id, repo, list(plan.tasks)))


def _integration_branch(plan: Plan, run_id: str, repo: RepoInfo) -> str | None:
    """The run's integration branch: the plan's name, or that plus the run id if it exists."""
    if plan.integrate_branch is None:
        return None
    taken = existing_branches(repo.root)
    name = plan.integrate_branch
    return name if name not in taken else f"{name}-{run_id}"


def reopen_run(plan: Plan, store: Store, run: RunRecord, repo: RepoInfo) -> RunState:
    """Take every task of ``run`` that did not succeed back to pending, for ``--retry-failed``.

    Tasks added to the plan since are added as pending; tasks removed from it are ignored.
    Worktrees and branches of the run are reused; new ones start from the run's base commit.
    """
    state = RunState(store, run)
    added = [task for task in plan.tasks if task.id not in state.records]
    base = RepoInfo(repo.root, repo.base_ref, run.base_commit or repo.base_commit)
    state.reopen(
        [(task.id, task.wave, task.wave_name) for task in plan.tasks],
        _task_records(plan, run.run_id, base, added) if added else [],
        status=RunStatus.RUNNING,
        ended_at=None,
        exit_code=None,
        pid=os.getpid(),
    )
    return RunState(store, state.run, [task.id for task in plan.tasks])


async def recover(plan: Plan, store: Store, executor: Executor, now: float, grace: float) -> list[str]:
    """Repair what dead runs of ``plan`` left: stop what still runs of them, record their tasks
    interrupted.

    Called with the plan's lock held, so no run of this plan is alive: whatever the executor
    still runs under this plan's key prefix is a leftover, whatever run it belongs to. Returns
    one message per repaired run (and one for the processes stopped).
    """
    messages = []
    refs: list[str] = []
    for run in store.runs(plan.key):
        if run.status is not RunStatus.RUNNING:
            continue
        refs += [a.ref for a in store.open_attempts(run.run_id) if a.ref]
        RunState(store, run).abandon(now)
        messages.append(
            f"run {run.run_id} had been stopped without cleanup (supervisor pid {run.pid} is gone)"
        )
    stopped = await executor.sweep(AttemptKey.prefix(plan.uid), refs, grace)
    if stopped:
        messages.append(f"stopped {stopped} leftover agent process(es) of earlier runs")
    return messages
