"""``teardown`` hooks: what a task's workspace releases before ``pagent clean`` removes it.

``teardown_all`` runs each worktree's task's ``teardown`` commands (the plan as it is now) like
its other hooks (``supervisor.engine.hooks``): through the executor, in the agent's working
directory, with the task's ``PAGENT_*`` variables, under the task's sandbox when it has one (its
attempts' confinement: the workspace holds what the agent wrote), each bounded by
``setup_timeout``, their output in ``logs/<task>.teardown.log`` of the run. A teardown that
fails is reported (one line each, returned) and never keeps the worktree: it is removed all the
same, since whatever the teardown could not release is not held by the worktree's files.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.agents.base import Kinds
from supervisor.engine.gate import Stop
from supervisor.engine.hooks import run_hooks
from supervisor.engine.logfile import LogFile
from supervisor.engine.spec import confinement
from supervisor.plan.model import Plan
from supervisor.seam import AttemptKey, AttemptSpec, Executor, Workspace
from supervisor.state.layout import Layout


@dataclass(frozen=True)
class Teardown:
    """One worktree whose task has ``teardown`` hooks."""

    run_id: str
    task_id: str
    path: Path  # the worktree
    branch: str
    attempts: int  # the task's attempts so far (PAGENT_ATTEMPT)


async def teardown_all(
    plan: Plan, repo: Path, executor: Executor, worktrees: Sequence[Teardown], kinds: Kinds | None = None
) -> list[str]:
    """Run the teardown hooks of ``worktrees`` (one after the other); one line per failure.
    ``kinds`` (the registry) names what a sandboxed task's agent may write; without it, or where
    the executor cannot confine, teardowns run unconfined (``sandbox = true`` cannot have run)."""
    layout = Layout.of(plan)
    confinable = kinds is not None and executor.confinement_problem() is None
    failures = []
    for tree in worktrees:
        task = plan.task(tree.task_id)
        settings = task.settings
        key = AttemptKey(plan.uid, tree.run_id, tree.task_id, 0)  # not an attempt: number 0
        env = {
            "PAGENT_RUN_ID": tree.run_id,
            "PAGENT_TASK_ID": tree.task_id,
            "PAGENT_WAVE": task.wave_name,
            "PAGENT_ATTEMPT": str(tree.attempts),
        }
        cwd = tree.path / settings.workdir if settings.workdir else tree.path
        workspace = Workspace(tree.path, tree.branch, None, cwd=cwd, repo=repo)
        confined = None
        if confinable and kinds is not None and settings.sandbox is not False:
            confined = confinement(plan, settings, kinds[plan.agents[settings.agent].kind])
        where = cwd if cwd.is_dir() else tree.path
        spec = AttemptSpec(key, (), env, where, None, workspace, confinement=confined)
        path = layout.teardown_log(tree.run_id, tree.task_id)
        log = LogFile(path)
        try:
            failed = await run_hooks(
                "teardown",
                settings.teardown,
                spec=spec,
                timeout=settings.setup_timeout,
                grace=settings.kill_grace,
                log=log,
                executor=executor,
                stop=Stop(),
            )
        finally:
            log.close()
        if failed is not None:
            detail = failed.removeprefix("setup: ").removeprefix("teardown ")
            failures.append(f"teardown of {tree.task_id} (run {tree.run_id}) failed: {detail}; see {path}")
    return failures
