"""After each wave: which succeeded tasks overlap, and (optionally) merging them into one branch.

Overlaps are pairs of succeeded tasks (of this wave and the earlier ones) whose diffs touch the
same paths; they are recorded on the run (``overlaps`` in ``pagent status --json``). With
``[integrate] branch = ...`` each wave's succeeded task branches are merged into that branch,
in its own worktree (``<worktree_root>/<run id>/.integration``), fewest overlaps first. A merge
that conflicts is aborted, its task marked ``conflict`` with the conflicting paths, and the
others go on. Neither ``base`` nor any task branch is ever rewritten.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import anyio

from supervisor.engine import events
from supervisor.errors import GitError
from supervisor.plan.model import Wave
from supervisor.results import integration
from supervisor.state.records import TaskState
from supervisor.workspace.worktree import ensure_worktree

if TYPE_CHECKING:
    from supervisor.engine.runner import Runner

CONFLICT = "conflict"


def _paths(runner: Runner) -> dict[str, list[str]]:
    """The changed paths of every succeeded task so far, in plan order."""
    found = {}
    for task in runner.plan.tasks:
        record = runner.records.get(task.id)
        if record is not None and record.state is TaskState.SUCCEEDED and record.diff:
            found[task.id] = list(json.loads(record.diff).get("paths", []))
    return found


async def after_wave(runner: Runner, wave: Wave) -> None:
    """Record overlaps, then merge the wave's succeeded tasks into the integration branch."""
    overlaps = integration.overlaps(_paths(runner))
    runner.store.update_run(runner.run.run_id, overlaps=json.dumps([o.to_dict() for o in overlaps]))
    wave_ids = {task.id for task in wave.tasks}
    for overlap in overlaps:
        if wave_ids & set(overlap.tasks):
            runner.emit(
                events.Notice(
                    f"overlap: {overlap.tasks[0]} and {overlap.tasks[1]} both change "
                    + ", ".join(overlap.paths[:5])
                )
            )
    branch = runner.run.integration_branch
    if branch is None or runner.workspace.worktrees is None:
        return
    succeeded = [t.id for t in wave.tasks if runner.records[t.id].state is TaskState.SUCCEEDED]
    if not succeeded:
        return
    order = integration.merge_order(succeeded, overlaps)
    merges = [(task_id, runner.records[task_id].branch or "") for task_id in order]
    path = runner.workspace.worktrees / ".integration"
    wave_name = wave.name.replace("{", "{{").replace("}", "}}")
    message = f"pagent: merge {{branch}} ({wave_name})"
    try:
        async with runner.git_lock:
            await anyio.to_thread.run_sync(
                ensure_worktree, runner.workspace.repo, path, branch, runner.workspace.base_commit
            )
            merged = await anyio.to_thread.run_sync(lambda: integration.integrate(path, merges, message))
    except GitError as exc:
        runner.emit(events.Notice(f"integration into {branch} skipped for wave {wave.name}: {exc}"))
        return
    previous = json.loads(runner.store.run(runner.run.run_id).integration or "[]")  # type: ignore[union-attr]
    for result in merged:
        previous.append(
            {
                "task": result.task_id,
                "branch": result.branch,
                "merged": result.merged,
                "conflicts": list(result.conflicts),
                "wave": wave.name,
            }
        )
        if not result.merged:
            runner.set_task(
                result.task_id,
                state=TaskState.CONFLICT,
                reason=CONFLICT,
                conflicts=json.dumps(list(result.conflicts)),
            )
            runner.emit(
                events.Notice(
                    f"{result.task_id}: conflicts with {branch} in "
                    f"{', '.join(result.conflicts) or '?'}; not merged",
                    result.task_id,
                )
            )
    runner.store.update_run(runner.run.run_id, integration=json.dumps(previous))
