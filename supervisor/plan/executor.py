"""The plan's ``[executor]`` table checked into ``ExecutorConfig``, and what cannot run remotely.

The table's shape is ``schema``'s; the rules here are the ones msgspec cannot check: the Ray keys
only with ``kind = "ray"``, resources that Ray lets a job's entrypoint ask for, a remote whose
URL carries no password (every job's command line shows it on the Ray dashboard), a positive
start timeout, and no task that needs the plan's repository itself (``isolation = "none"``: a
node has no copy of it). Nothing is contacted here: whether the cluster answers, and whether the
``ray`` extra is installed, is asked by whoever composes the executor.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from types import MappingProxyType

from supervisor.errors import PlanError
from supervisor.plan.model import ExecutorConfig, Wave
from supervisor.plan.schema import ExecutorTable
from supervisor.plan.units import parse_duration

# Ray's own resources: a job's entrypoint asks for them by other arguments, never by name.
_RAY_OWN = frozenset({"CPU", "GPU", "memory", "object_store_memory"})
_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@")
_RAY_KEYS = ("address", "resources", "remote", "python", "start_timeout")


def executor_config(table: ExecutorTable | None, plan_dir: Path, label: str) -> ExecutorConfig:
    """The checked form of ``[executor]`` (``None``: no table, attempts run on this machine)."""
    if table is None:
        return ExecutorConfig()
    if table.kind == "local":
        for key in _RAY_KEYS:
            if getattr(table, key) is not None:
                raise PlanError(f"{label}: executor.{key}: only with kind = 'ray'")
        return ExecutorConfig()
    resources = dict(table.resources) if table.resources is not None else {"agent_slot": 1.0}
    if not resources:
        raise PlanError(f"{label}: executor.resources: name at least one resource (agent_slot = 1)")
    for name in resources:
        if name in _RAY_OWN or name.startswith("node:"):
            raise PlanError(
                f"{label}: executor.resources: {name!r} is Ray's own; name a custom resource "
                "the nodes offer (ray start --resources='{\"agent_slot\": 4}')"
            )
    remote = table.remote or "origin"
    if _PASSWORD.match(remote):
        raise PlanError(
            f"{label}: executor.remote: the URL carries a password, which every job's command line "
            "shows on the Ray dashboard: give the nodes a credential helper or an ssh key instead"
        )
    if remote.startswith(("./", "../")) or remote in (".", ".."):
        remote = str((plan_dir / remote).resolve())
    start_timeout = 120.0
    if table.start_timeout is not None:
        try:
            start_timeout = parse_duration(table.start_timeout)
        except ValueError as exc:
            raise PlanError(f"{label}: executor.start_timeout: {exc}") from None
        if start_timeout <= 0:
            raise PlanError(f"{label}: executor.start_timeout: expected a duration > 0")
    return ExecutorConfig(
        kind="ray",
        address=table.address.rstrip("/") if table.address else None,
        resources=MappingProxyType(resources),
        remote=remote,
        python=table.python or "python3",
        start_timeout=start_timeout,
    )


def check_remote_tasks(waves: Sequence[Wave], config: ExecutorConfig, label: str) -> None:
    """With a remote executor, every task works on its own branch: ``isolation = "none"``
    (the agent in the plan's repository itself) cannot run on a node."""
    if config.kind == "local":
        return
    for wave in waves:
        for i, task in enumerate(wave.tasks):
            if task.settings.isolation == "none":
                raise PlanError(
                    f"{label}: waves[{wave.index}].tasks[{i}].isolation: 'none' cannot run on Ray "
                    "(a node has no copy of the plan's repository): leave the default, 'worktree'"
                )


def password_problem(url: str) -> str | None:
    """Why a remote's URL cannot be given to the nodes (it carries a password), or ``None``."""
    if _PASSWORD.match(url):
        return (
            "its URL carries a password, which every job's command line shows on the Ray dashboard: "
            "give the nodes a credential helper or an ssh key instead"
        )
    return None
