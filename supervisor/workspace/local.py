"""The local executor's task workspaces: ``Worktrees`` (git worktrees of the plan's repository)
and ``LocalWorkspaces``, which hands each request to the kind it names (``worktree``, or
``clone``: ``supervisor.workspace.clones``).

Each method is a coroutine that does its git work in a worker thread through
``supervisor.workspace.git.in_thread``: cancelling the await (SIGTERM of pagent-run, a stop)
kills the git calls it has running at once. ``branch = None`` in a request means no isolation:
the agent works in the repository itself and nothing is created, copied, committed, pinned or
inspected.

Preparing a worktree copies what the request's ``copy`` and the repository's
``.worktreeinclude`` name from the main worktree (``supervisor.workspace.copying``); those paths
(``Workspace.copied``) are excluded from auto-commit and from "uncommitted" like the done marker.

After an attempt (``collect``), in this order: the worktree is verified (its ``.git`` must lead
to its own administrative directory, or pagent touches nothing in it -- its HEAD is pinned all
the same, as the repository itself records it); the branch's commit and a differing HEAD are
pinned; the done marker is removed; if HEAD was left detached exactly at the task branch's
commit it is re-attached; auto-commit runs only while HEAD is the task branch, so pagent never
commits anywhere else, and the pin follows it; then the branch's state, what changed, the diff
stats and the repository's branches and tags are reported.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

from supervisor.errors import GitError
from supervisor.seam import Begun, CollectRequest, Facts, Workspace, WorkspaceRequest
from supervisor.workspace import facts, refs
from supervisor.workspace.copying import copy_in
from supervisor.workspace.git import commit_of, in_thread, is_ancestor
from supervisor.workspace.gitdir import admin_dir, head_in, verified, where
from supervisor.workspace.worktree import (
    changed_since,
    ensure_worktree,
    onto_branch,
    remove_marker,
    workdir_in,
)


class Kind(Protocol):
    """One kind of workspace: ``Worktrees`` or ``supervisor.workspace.clones.Clones``."""

    async def prepare(self, request: WorkspaceRequest) -> Workspace: ...

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun: ...

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts: ...


class LocalWorkspaces:
    """Each request to the workspace kind it names (``WorkspaceRequest.kind``, ``Workspace.kind``)."""

    def __init__(self, kinds: Mapping[str, Kind]) -> None:
        self._kinds = dict(kinds)

    def _kind(self, name: str) -> Kind:
        try:
            return self._kinds[name]
        except KeyError:
            raise GitError(f"no workspace kind {name!r} here (known: {', '.join(self._kinds)})") from None

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        """The task's workspace, made by its kind (no isolation: always the repository itself)."""
        return await self._kind(request.kind if request.branch is not None else "worktree").prepare(request)

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun:
        return await self._kind(workspace.kind).begin(workspace, marker)

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        return await self._kind(workspace.kind).collect(workspace, request)


class Worktrees:
    """Task workspaces as git worktrees of the plan's repository (see the module docstring)."""

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        """Create (or reuse) the task's worktree on its branch and its ``workdir``; ``GitError``
        or ``OSError`` if it cannot."""
        if request.branch is None and request.workdir is None:
            return prepare(request)  # the repository itself, as it is: nothing to run in a thread
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
    copied = copy_in(request.repo, request.path, request.copy)
    cwd = workdir_in(request.path, request.workdir)
    head = facts.head(request.path)
    return Workspace(request.path, request.branch, head, created, cwd, request.repo, copied=copied)


def begin(workspace: Workspace, marker: str | None) -> Begun:
    """``Worktrees.begin``, synchronously."""
    remove_marker(workspace.path, marker)
    if workspace.branch is None or workspace.repo is None:
        return Begun(facts.head(workspace.path))
    verified(workspace.repo, workspace.path)
    head, on = where(workspace.path)
    if on != workspace.branch or head is None:  # an earlier attempt left HEAD elsewhere
        onto_branch(workspace.path, workspace.branch)
        head = facts.head(workspace.path)
    return Begun(head, refs.snapshot(workspace.repo))


def collect(workspace: Workspace, request: CollectRequest) -> Facts:
    """``Worktrees.collect``, synchronously (see the module docstring for the order)."""
    path, branch, repo = workspace.path, workspace.branch, workspace.repo
    if branch is None or repo is None:  # no isolation: nothing of pagent's to look at
        return Facts(remove_marker(path, request.marker), False, (), None)
    pin = f"{request.pins}/{request.attempt}" if request.pins else None
    exclude = [*([request.marker] if request.marker else []), *workspace.copied]
    pinned: tuple[str, ...] = ()
    try:
        verified(repo, path)  # else pagent touches nothing in it
        head, on = where(path)
        tip = commit_of(repo, f"refs/heads/{branch}")
        if pin is not None:  # first, so that a stop or a failure below cannot leave it unpinned
            pinned = _pin(repo, branch, pin, tip, head)
        marked = remove_marker(path, request.marker)
        if on != branch and head is not None and head == tip:
            on = branch if onto_branch(path, branch) else on  # detached at the branch: nothing to lose
        committed = False
        if request.auto_commit and on == branch:  # never anywhere but on the task's branch
            committed = facts.auto_commit(path, _message(request), exclude)
    except (GitError, OSError):
        if pin is not None and not pinned:  # HEAD as the repository itself keeps it
            _pin(
                repo,
                branch,
                pin,
                commit_of(repo, f"refs/heads/{branch}"),
                head_in(repo, admin_dir(repo, path)),
            )
        raise
    if committed:
        head = tip = facts.head(path)
        if pin is not None:
            pinned = _pin(repo, branch, pin, tip, head)
    after = refs.snapshot(repo)
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
        refs=after,
    )


def _message(request: CollectRequest) -> str:
    """The auto-commit's message."""
    return f"pagent: work left uncommitted by {request.task_id}, attempt {request.attempt} ({request.reason})"


def _pin(repo: Path, branch: str, pin: str, tip: str | None, head: str | None) -> tuple[str, ...]:
    """Pin the branch's commit ``tip`` at ``pin`` (HEAD's if the branch is gone) and a differing
    ``head`` at ``pin-head``, in one transaction; the refs written."""
    main = tip or head
    wanted = [(pin, main)] if main is not None else []
    if head is not None and head != main:
        wanted.append((f"{pin}-head", head))
    if wanted:
        number = pin.rsplit("/", 1)[-1]
        refs.pin_all(repo, wanted, f"the end of attempt {number} on {branch}")
    return tuple(ref for ref, _ in wanted)
