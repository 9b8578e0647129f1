"""Composition: the one place that picks the concrete parts a command works with.

The core never chooses its own parts: the plan loader is given the registry's catalog of agent
kinds and apprise's check of notification URLs, the engine is given the executor and the
registry. Commands (and tests that drive the
core the way the CLI does) take them from here.
"""

from __future__ import annotations

import os
from pathlib import Path

from supervisor.agents.registry import KINDS
from supervisor.handoff.check import url_problem
from supervisor.plan import load
from supervisor.plan.model import Plan
from supervisor.seam import Executor

__all__ = ["KINDS", "executor_for", "load_plan"]


def load_plan(path: str | Path) -> Plan:
    """Read and validate the plan at ``path`` against the registry's agent kinds; notification
    URLs are checked by apprise (loaded only when the plan has some)."""
    return load.load_plan(path, KINDS.catalog(), check_url=url_problem)


def executor_for(plan: Plan) -> Executor:
    """The executor a plan's attempts run on (``[executor] kind``): local processes in git
    worktrees or clones, under bubblewrap where a task asks for the sandbox; or jobs on a Ray
    cluster (``PlanError``, exit 2, when the ``ray`` extra is not installed)."""
    if plan.executor.kind == "ray":
        return _ray_executor(plan)
    # Imported here: reading a plan (``pagent validate``) needs neither psutil nor anyio.
    from supervisor.launch.confine import wrapper
    from supervisor.launch.local import LocalExecutor
    from supervisor.state.layout import Layout
    from supervisor.workspace.clones import Clones
    from supervisor.workspace.local import LocalWorkspaces, Worktrees

    workspaces = LocalWorkspaces({"worktree": Worktrees(), "clone": Clones(confiner=wrapper)})
    # Agents' kept directories (``home = "own"``) live beside the plan's runs, never in $HOME.
    return LocalExecutor(workspaces, homes=Layout.of(plan).agent_homes)


def _ray_executor(plan: Plan) -> Executor:
    """The Ray executor for ``plan``, its task branches carried through the plan's remote.
    Ray itself is imported only when the cluster is first asked (not by ``pagent validate``)."""
    import importlib.util

    from supervisor.errors import PlanError

    missing = [name for name in ("ray", "aiohttp") if importlib.util.find_spec(name) is None]
    if missing:
        raise PlanError(
            f"{plan.path.name}: executor.kind: 'ray' needs the ray extra (missing: "
            f"{', '.join(missing)}): pip install 'pagent-run[ray]'"
        )
    if plan.executor.address is None and not os.environ.get("RAY_ADDRESS"):
        raise PlanError(
            f"{plan.path.name}: executor.address: not set, and neither is RAY_ADDRESS "
            "(the Ray Jobs API: http://HOST:8265)"
        )
    from supervisor.launch.ray import RayExecutor
    from supervisor.workspace.remote import RemoteBranches

    repo = plan.repo if plan.repo is not None else plan.plan_dir
    return RayExecutor(
        RemoteBranches(repo, plan.executor.remote),
        plan.executor,
        plan_uid=plan.uid,
        label=plan.path.name,
        jobs=plan.jobs,
    )
