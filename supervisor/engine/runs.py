"""Begin a run: a new one, or the latest one again for ``--retry-failed``; and repair dead ones.

Everything here happens while the plan's lock is held, before any agent starts, and every record
is written through the run state (``supervisor.engine.runstate``).
"""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.engine.runstate import RunState
from supervisor.plan.model import Plan, Task
from supervisor.seam import AttemptKey, Executor
from supervisor.state.records import RunRecord, RunStatus, TaskRecord, new_run_id
from supervisor.state.store import Store
from supervisor.workspace.git import RepoInfo
from supervisor.workspace.refs import Wish, reserve
from supervisor.workspace.worktree import default_worktree_root, worktree_path


def _task_records(
    plan: Plan,
    run_id: str,
    repo: RepoInfo,
    tasks: list[Task],
    *,
    root: Path,
    integration: str | None = None,
) -> tuple[list[TaskRecord], str | None, bool]:
    """Fresh task runs for ``tasks``, each with its branch (reserved now, at the run's base
    commit: ``supervisor.workspace.refs``) and its worktree under ``root`` decided; and the
    integration branch ``integration`` reserved the same way (in the same transaction), if
    given and there are branches to merge: its name and whether it was reserved."""
    isolated = [task for task in tasks if task.settings.isolation == "worktree"]
    wishes = [
        Wish(task.branch or f"pagent/{plan.name}/{task.id}", reshape=task.branch is None) for task in isolated
    ]
    if integration is not None and isolated:
        wishes.append(Wish(integration))
    got = reserve(repo.root, wishes, repo.base_commit, run_id) if wishes else []
    reserved = {task.id: (got[i], wishes[i].name) for i, task in enumerate(isolated)}
    records = []
    for task in tasks:
        branch: str | None = None
        worktree, tip = str(repo.root), None
        if task.id in reserved:
            name, wished = reserved[task.id]
            branch, tip = (name, repo.base_commit) if name is not None else (wished, None)
            worktree = str(worktree_path(root, run_id, task))
        records.append(
            TaskRecord(
                run_id=run_id,
                task_id=task.id,
                wave=task.wave,
                wave_name=task.wave_name,
                branch=branch,
                worktree=worktree,
                tip=tip,
                start_commit=tip if tip is not None and not task.stack else None,
            )
        )
    chosen = got[-1] if integration is not None and isolated else None
    return records, (chosen if chosen is not None else integration), chosen is not None


def new_run(plan: Plan, store: Store, repo: RepoInfo, now: float) -> RunState:
    """Record a new run of ``plan`` with every task pending and its branches reserved."""
    run_id = new_run_id(now)
    while store.run(run_id) is not None:
        run_id = new_run_id(now)
    root = default_worktree_root(plan, repo)
    records, integration, reserved = _task_records(
        plan, run_id, repo, list(plan.tasks), root=root, integration=plan.integrate_branch
    )
    run = RunRecord(
        run_id=run_id,
        plan_key=plan.key,
        plan_name=plan.name,
        plan_path=str(plan.path),
        started_at=now,
        pid=os.getpid(),
        repo=str(repo.root),
        base_commit=repo.base_commit,
        integration_branch=integration,
        integration_tip=repo.base_commit if reserved else None,
        worktrees=str(root / run_id),
    )
    return RunState.create(store, run, records)


def reopen_run(plan: Plan, store: Store, run: RunRecord, repo: RepoInfo) -> RunState:
    """Take every task of ``run`` that did not succeed back to pending, for ``--retry-failed``.

    Tasks added to the plan since are added as pending; tasks removed from it are ignored.
    Worktrees and branches of the run are reused; new ones start from the run's base commit.
    """
    state = RunState(store, run)
    added = [task for task in plan.tasks if task.id not in state.records]
    base = RepoInfo(repo.root, repo.base_ref, run.base_commit or repo.base_commit)
    # A run of an older version did not record its directory: its tasks' worktrees show it.
    isolated = [Path(r.worktree) for r in state.records.values() if r.branch is not None and r.worktree]
    if run.worktrees:
        run_dir = Path(run.worktrees)
    else:
        run_dir = isolated[0].parent if isolated else default_worktree_root(plan, repo) / run.run_id
    records = _task_records(plan, run.run_id, base, added, root=run_dir.parent)[0] if added else []
    state.reopen(
        [(task.id, task.wave, task.wave_name) for task in plan.tasks],
        records,
        status=RunStatus.RUNNING,
        ended_at=None,
        exit_code=None,
        pid=os.getpid(),
        worktrees=str(run_dir),
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
