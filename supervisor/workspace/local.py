"""``Worktrees``: the local executor's task workspaces, git worktrees of the plan's repository.

Each method is a coroutine that does its git work in a worker thread through
``supervisor.workspace.git.in_thread``: cancelling the await (SIGTERM of pagent-run, a stop)
kills the git calls it has running at once. ``branch = None`` in a request means no isolation:
the agent works in the repository itself and nothing is created, committed, pinned or inspected.

After an attempt (``collect``), in this order: the worktree is verified (its ``.git`` must lead
to its own administrative directory, or pagent touches nothing in it -- its HEAD is pinned all
the same, as the repository itself records it); the branch's commit and a differing HEAD are
pinned; the done marker is removed; if HEAD was left detached exactly at the task branch's
commit it is re-attached; auto-commit runs only while HEAD is the task branch, so pagent never
commits anywhere else, and the pin follows it; then the branch's state, what changed, the diff
stats and the repository's branches and tags are reported.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.errors import GitError
from supervisor.seam import Begun, CollectRequest, Facts, Workspace, WorkspaceRequest
from supervisor.workspace import facts, refs
from supervisor.workspace.git import commit_of, in_thread, is_ancestor
from supervisor.workspace.worktree import (
    admin_dir,
    changed_since,
    current_branch,
    ensure_worktree,
    head_in,
    onto_branch,
    remove_marker,
    verified,
    workdir_in,
)


class Worktrees:
    """Task workspaces as git worktrees of the plan's repository (see the module docstring)."""

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        """Create (or reuse) the task's worktree on its branch and its ``workdir``; ``GitError``
        or ``OSError`` if it cannot."""
        return await in_thread(prepare, request)

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun:
        """Remove a stale done marker, put HEAD back on the branch; the commit and refs now."""
        return await in_thread(begin, workspace, marker)

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        """Pins, the marker, auto-commit, the branch's state, what changed, the diff stats."""
        return await in_thread(collect, workspace, request)


def prepare(request: WorkspaceRequest) -> Workspace:
    """``Worktrees.prepare``, synchronously."""
    if request.branch is None:
        return Workspace(request.repo, None, None, cwd=workdir_in(request.repo, request.workdir))
    created = ensure_worktree(
        request.repo,
        request.path,
        request.branch,
        request.start,
        expect=request.expect,
        fresh=request.fresh,
        pins=request.pins,
    )
    cwd = workdir_in(request.path, request.workdir)
    return Workspace(request.path, request.branch, facts.head(request.path), created, cwd, request.repo)


def begin(workspace: Workspace, marker: str | None) -> Begun:
    """``Worktrees.begin``, synchronously."""
    remove_marker(workspace.path, marker)
    if workspace.branch is not None and workspace.repo is not None:
        verified(workspace.repo, workspace.path)
        onto_branch(workspace.path, workspace.branch)
    snapshot = refs.snapshot(workspace.repo) if workspace.repo is not None else {}
    return Begun(facts.head(workspace.path), snapshot)


def collect(workspace: Workspace, request: CollectRequest) -> Facts:
    """``Worktrees.collect``, synchronously (see the module docstring for the order)."""
    path, branch, repo = workspace.path, workspace.branch, workspace.repo or workspace.path
    pin = f"{request.pins}/{request.attempt}" if request.pins else None
    early: tuple[str, ...] = ()
    try:
        if branch is not None:
            verified(repo, path)  # else pagent touches nothing in it
            if pin is not None:  # first, so that a stop or a failure below cannot leave it unpinned
                early = _pin(repo, branch, _head(path), pin)
        marked = remove_marker(path, request.marker)
        exclude = [request.marker] if request.marker else []
        committed = _auto_commit(path, branch, request, exclude) if branch is not None else False
    except (GitError, OSError):
        if branch is not None and pin is not None and not early:  # HEAD as the repository keeps it
            _pin(repo, branch, head_in(repo, admin_dir(repo, path)), pin)
        raise
    head = _head(path)
    tip = _tip(repo, branch) if branch is not None else head
    pinned = early
    if branch is not None and pin is not None and (committed or not early):
        pinned = _pin(repo, branch, head, pin)  # again: auto-commit moved the branch
    descends = tip is not None and is_ancestor(repo, request.start_commit, tip)
    changed = changed_since(path, request.head_before) if head is not None else []
    diff = None
    if tip is not None:
        try:
            diff = facts.diff_stats(path, request.start_commit, exclude, head=tip)
        except GitError:  # no history shared with the start any more: nothing to measure against
            diff = None
    return Facts(
        marked,
        committed,
        tuple(changed),
        diff,
        head=head,
        branch_tip=tip,
        on_branch=tip is not None and head == tip,
        descends=descends,
        pinned=pinned,
        refs=refs.snapshot(repo),
    )


def _auto_commit(path: Path, branch: str, request: CollectRequest, exclude: list[str]) -> bool:
    """Auto-commit (when asked) what the attempt left uncommitted, only on the task's branch; a
    HEAD left detached exactly at the branch's commit is re-attached first (nothing to lose)."""
    if current_branch(path) != branch and _head(path) == _tip(path, branch):
        onto_branch(path, branch)
    if not request.auto_commit or current_branch(path) != branch:
        return False
    message = (
        f"pagent: work left uncommitted by {request.task_id}, attempt {request.attempt} ({request.reason})"
    )
    return facts.auto_commit(path, message, exclude)


def _head(path: Path) -> str | None:
    return commit_of(path, "HEAD")


def _tip(repo: Path, branch: str) -> str | None:
    return commit_of(repo, f"refs/heads/{branch}")


def _pin(repo: Path, branch: str, head: str | None, pin: str) -> tuple[str, ...]:
    """Pin the branch's commit at ``pin`` (HEAD's if the branch is gone) and a differing HEAD at
    ``pin-head``; the refs written."""
    tip = _tip(repo, branch)
    written = []
    main = tip or head
    if main is not None:
        refs.pin(repo, pin, main, f"the end of attempt {pin.rsplit('/', 1)[-1]} on {branch}")
        written.append(pin)
    if head is not None and head != main:
        refs.pin(repo, f"{pin}-head", head, "the worktree's HEAD, off its branch")
        written.append(f"{pin}-head")
    return tuple(written)
