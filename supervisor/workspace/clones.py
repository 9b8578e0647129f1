"""``Clones``: task workspaces as clones of the plan's repository (``workspace = "clone"``).

The same three calls as ``Worktrees`` (``supervisor.workspace.local``), each a coroutine whose
git dies when its await is cancelled, keeping the seam's promises for a workspace the agent
commits in without writing the plan's repository (``supervisor.workspace.clone``):

- ``prepare``: the task branch is claimed in the plan's repository exactly as for a worktree
  (reserved, a planted commit pinned and replaced, a rewritten branch refused); the clone is made
  on it, or reused: commits an interrupted attempt left in it are first fetched into the plan's
  repository (onto the branch when they descend from it, else pinned at
  ``<pins>/recovered-<commit>``), so a crash loses nothing and a retry continues there;
  Then what ``copy`` and ``.worktreeinclude`` name is copied in, as into a worktree;
- ``begin``: the stale marker removed, the clone back on the branch's commit;
- ``collect``, in this order: the clone checked (a tampered one is touched no further); its
  branch tip and a differing HEAD fetched into the plan's repository as the attempt's pins; the
  marker removed; auto-commit (only on the task branch) -- under the attempt's confinement when it
  has one, since git reads files the agent wrote -- and the pin moved to it; the task branch set
  to the clone's tip when that descends from the task's start (else it stays, and the facts say
  ``descends = False``); then what changed, the diff stats (in the plan's repository) and the
  repository's branches and tags. When ``collect`` returns, the commits are home.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from supervisor.errors import GitError
from supervisor.seam import Begun, CollectRequest, Confinement, Facts, Workspace, WorkspaceRequest
from supervisor.workspace import clone, facts, refs
from supervisor.workspace.copying import copy_in
from supervisor.workspace.git import Wrap, commit_of, git, in_thread, is_ancestor, shown, wrapped_by
from supervisor.workspace.gitdir import where
from supervisor.workspace.worktree import checked_tip, ensure_branch, remove_marker, workdir_in

# The confinement's wrapper for pagent's own git in a workspace (the executor's sandbox).
Confiner = Callable[[Confinement, Workspace], Wrap]


class Clones:
    """Task workspaces as clones of the plan's repository (see the module docstring)."""

    def __init__(self, confiner: Confiner | None = None) -> None:
        self._confiner = confiner

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        """Claim the branch, make or reuse the clone; ``GitError``/``OSError`` if it cannot."""
        return await in_thread(prepare, request)

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun:
        """Remove a stale marker, put the clone on the branch; its commit and the refs now."""
        return await in_thread(begin, workspace, marker)

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        """Pins, marker, auto-commit, the branch set to the clone's work, the facts."""
        wrap = None
        if request.confinement is not None and self._confiner is not None:
            wrap = self._confiner(request.confinement, workspace)
        return await in_thread(collect, workspace, request, wrap)


def prepare(request: WorkspaceRequest) -> Workspace:
    """``Clones.prepare``, synchronously."""
    repo, path, branch = request.repo, request.path, request.branch
    if branch is None:
        raise GitError("a clone workspace needs a task branch")
    created = not path.exists()
    if created:
        ensure_branch(
            repo, branch, request.start, expect=request.expect, fresh=request.fresh, pins=request.pins
        )
        clone.make_clone(repo, path, branch)
    else:
        _recover(repo, path, branch, request.pins)
        checked_tip(repo, branch, expect=request.expect, pins=request.pins)
    head = clone.sync(repo, path, branch)
    copied = copy_in(repo, path, request.copy)  # as for a worktree (supervisor.workspace.copying)
    cwd = workdir_in(path, request.workdir)
    return Workspace(path, branch, head, created, cwd, repo, kind="clone", copied=copied)


def _recover(repo: Path, path: Path, branch: str, pins: str | None) -> None:
    """Before reusing a clone: what an interrupted attempt committed there reaches the plan's
    repository -- onto the branch when it descends from it, else pinned aside."""
    clone.check_clone(repo, path, branch)
    mine = commit_of(path, f"refs/heads/{branch}")
    tip = commit_of(repo, f"refs/heads/{branch}")
    if mine is None or tip is None or mine == tip or pins is None:
        return
    if clone.unfetched_commits(repo, path, branch) == 0 and not is_ancestor(path, tip, mine):
        return  # nothing of its own: an older state of the branch, moved on since
    pin = f"{pins}/recovered-{mine[:12]}"
    clone.fetch_pins(repo, path, branch, pin)
    if is_ancestor(repo, tip, mine):
        clone.integrate(repo, branch, mine, tip)


def begin(workspace: Workspace, marker: str | None) -> Begun:
    """``Clones.begin``, synchronously."""
    repo, branch = workspace.repo, workspace.branch
    if repo is None or branch is None:
        raise GitError("a clone workspace needs its repository and branch")
    remove_marker(workspace.path, marker)
    head = clone.sync(repo, workspace.path, branch)
    return Begun(head, refs.snapshot(repo))


def collect(workspace: Workspace, request: CollectRequest, wrap: Wrap | None = None) -> Facts:
    """``Clones.collect``, synchronously (see the module docstring for the order)."""
    path, branch, repo = workspace.path, workspace.branch, workspace.repo
    if branch is None or repo is None:
        raise GitError("a clone workspace needs its repository and branch")
    pin = f"{request.pins}/{request.attempt}" if request.pins else f"refs/pagent/+clone/{request.attempt}"
    exclude = [*([request.marker] if request.marker else []), *workspace.copied]
    clone.check_clone(repo, path, branch)  # else pagent touches nothing in it
    mine, head, pinned = clone.fetch_pins(repo, path, branch, pin)
    marked = remove_marker(path, request.marker)
    _, on = where(path)
    if on != branch and head is not None and head == mine:
        git(["symbolic-ref", "-m", "pagent: back on the task branch", "HEAD", f"refs/heads/{branch}"], path)
        on = branch
    committed = False
    with wrapped_by(wrap):  # git reads what the agent wrote: under its confinement
        if request.auto_commit and on == branch:  # never anywhere but on the task's branch
            committed = facts.auto_commit(path, _message(request), exclude)
        dirty = bool(facts.changed_paths(path, exclude))
    if committed:
        mine, head, pinned = clone.fetch_pins(repo, path, branch, pin)
    descends = mine is not None and is_ancestor(repo, request.start_commit, mine)
    if descends and mine is not None:
        clone.integrate(repo, branch, mine, request.start_commit)
    tip = commit_of(repo, f"refs/heads/{branch}")
    changed: list[str] = []
    if head is not None:
        out = git(["diff", "--name-only", "-z", "--no-renames", request.head_before, head], repo)
        changed = [shown(p) for p in out.split("\0") if p]
    diff = None
    if tip is not None:
        try:
            diff = facts.diff_stats(repo, request.start_commit, exclude, head=tip, uncommitted=dirty)
        except GitError:  # no history shared with the start any more: nothing to measure against
            diff = None
    return Facts(
        marked,
        committed,
        tuple(changed),
        diff,
        head=head,
        branch_tip=tip,
        # HEAD on the clone's branch, and that branch home (or refused: ``descends`` says why).
        on_branch=tip is not None and on == branch and head == mine and (tip == mine or not descends),
        descends=descends or mine is None,
        pinned=pinned,
        refs=refs.snapshot(repo),
    )


def _message(request: CollectRequest) -> str:
    """The auto-commit's message (as ``Worktrees``')."""
    return f"pagent: work left uncommitted by {request.task_id}, attempt {request.attempt} ({request.reason})"
