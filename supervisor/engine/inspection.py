"""After an attempt in a workspace: its facts, the checks' verdict, verify, and refs others moved.

``inspect`` asks the executor to ``collect`` (pins, marker, auto-commit, the branch's state,
diff stats; given ``kill_grace`` after a stop before it is cancelled, git and all, since its pins
and auto-commit matter), applies ``supervisor.results.checks.judge``, runs ``verify`` if the
attempt still succeeded, and records the branches and tags that changed while the attempt ran
other than the run's own (``RunState.record_moved_refs``; one notice each). It changes no
task's state: it returns the attempt's result after the checks, their detail and the task's
record changes (diff stats, the branch's commit), which the task run persists with the
attempt's end.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from supervisor.engine import events
from supervisor.engine.attempt import AttemptResult, run_verify
from supervisor.engine.gate import Stop
from supervisor.engine.logfile import LogFile
from supervisor.engine.runstate import RunState
from supervisor.errors import GitError
from supervisor.plan.model import Task
from supervisor.reasons import Reason
from supervisor.results.checks import judge, moved_line, moved_refs, verified
from supervisor.seam import AttemptSpec, Begun, CollectRequest, Executor, Workspace
from supervisor.workspace.refs import pins


@dataclass(frozen=True)
class Inspected:
    """An attempt after the checks: its result, what the checks found, the task's changes."""

    result: AttemptResult
    detail: dict[str, Any]
    task_changes: dict[str, Any]


async def inspect(
    *,
    task: Task,
    state: RunState,
    executor: Executor,
    stop: Stop,
    emit: Callable[[events.Event], None],
    workspace: Workspace,
    spec: AttemptSpec,
    result: AttemptResult,
    begun: Begun,
    start_commit: str,
    log: LogFile,
) -> Inspected:
    """See the module docstring; a workspace that cannot be read fails the attempt
    (``worktree: ...``), one not inspected because of a stop ends it ``interrupted``."""
    settings = task.settings
    request = CollectRequest(
        task_id=task.id,
        attempt=spec.attempt,
        reason=result.reason,
        head_before=begun.head,
        start_commit=start_commit,
        auto_commit=settings.auto_commit,
        marker=settings.done_marker,
        pins=pins(state.run_id, task.id),
        confinement=spec.confinement,  # auto-commit reads what the agent wrote: confined too
    )
    try:
        facts = await stop.before(executor.collect, workspace, request, grace=settings.kill_grace)
    except (GitError, OSError) as exc:
        log.note(f"cannot inspect the workspace: {exc}")
        return Inspected(replace(result, succeeded=False, reason=Reason.WORKSPACE.detail(exc)), {}, {})
    if facts is None:
        log.note("the workspace was not inspected: pagent-run was stopped")
        return Inspected(replace(result, succeeded=False, reason=Reason.INTERRUPTED.value), {}, {})
    final_message = str(result.metrics.get("result_text") or "")
    verdict = judge(settings, result.succeeded, result.reason, facts, final_message)
    moved = moved_refs(begun.refs, facts.refs, own_refs(state)) if facts.refs is not None else []
    if moved:
        state.record_moved_refs(task.id, spec.attempt, moved)
        for change in moved:
            emit(events.Notice(moved_line(change, task.id, spec.attempt), task.id))
    if verdict.succeeded and settings.verify:
        code = await run_verify(
            argv=settings.verify, spec=spec, settings=settings, log=log, executor=executor
        )
        verdict = verified(verdict, code)
    detail = {**verdict.detail, "moved_refs": moved} if moved else verdict.detail
    changes: dict[str, Any] = {}
    if facts.diff is not None:
        changes["diff"] = json.dumps(facts.diff.to_dict())
    if facts.branch_tip is not None:
        changes["tip"] = facts.branch_tip
    return Inspected(replace(result, succeeded=verdict.succeeded, reason=verdict.reason), detail, changes)


def own_refs(state: RunState) -> set[str]:
    """The refs the run moves itself: its task branches and its integration branch."""
    branches = {record.branch for record in state.records.values() if record.branch}
    if state.run.integration_branch:
        branches.add(state.run.integration_branch)
    return {f"refs/heads/{branch}" for branch in branches}
