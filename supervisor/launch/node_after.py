"""After an attempt's agent on a node: what needs the workspace's files, before it is out of reach.

``after_attempt`` checks and removes the done marker, auto-commits what the agent left (only on
HEAD, hooks and signing off), notes what stays uncommitted and where HEAD and the branch are,
and pushes the branch and the attempt's pins (``node_git.push``). It reports into the attempt's
result record: facts as they are found, each failure as ``(phase, error)``; the first one is
the attempt's. After a stop it keeps within the stop budget (the push's time shrinks to what is
left of it). Standard library only: this module runs on the nodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from supervisor.launch import node_git
from supervisor.launch.node_spec import NodeSpec


def after_attempt(
    spec: NodeSpec,
    repo: Path,
    checkout: node_git.Checkout,
    *,
    reason: str,
    result: dict[str, Any],
    stopping: Callable[[], bool],
    fail: Callable[[str, str], None],
) -> None:
    """Marker, auto-commit, push (see the module docstring); ``reason`` goes into the
    auto-commit's message."""
    deadline = time.monotonic() + spec.stop_budget
    exclude = [spec.done_marker] if spec.done_marker else []
    try:
        if spec.done_marker:
            marker = repo / spec.done_marker
            result["marker"] = marker.exists()
            marker.unlink(missing_ok=True)
        if spec.auto_commit and node_git.head(repo) is not None:
            message = f"pagent: work left uncommitted by {spec.task_id}, attempt {spec.attempt} ({reason})"
            result["auto_committed"] = node_git.auto_commit(repo, message, exclude)
        result["dirty"] = node_git.dirty(repo, exclude)
    except (node_git.NodeGitError, OSError) as error:
        fail("after", str(error))
    head = node_git.head(repo)
    branch_head = node_git.branch_commit(repo, spec.branch)
    result.update(head=head, branch_head=branch_head, on_branch=head is not None and head == branch_head)
    if branch_head is not None:
        result["rewritten"] = not node_git.is_ancestor(repo, checkout.tip, branch_head)
    timeout = spec.git_timeout
    if stopping():
        timeout = max(1.0, min(timeout, deadline - time.monotonic()))
    try:
        pushed = node_git.push(
            repo,
            spec.remote,
            branch=spec.branch,
            branch_commit=branch_head,
            pin_ref=spec.pin_ref,
            pin_commit=head,
            expected=checkout.remote_tip,
            force=spec.force_push,
            timeout=timeout,
        )
    except node_git.NodeGitError as error:
        result.update(pushed_branch=False, pushed_pin=False, forced=False)
        fail("push", str(error))
        return
    result.update(pushed_branch=pushed.branch, pushed_pin=pushed.pin, forced=pushed.forced)
    if pushed.error:
        fail("push", pushed.error)
