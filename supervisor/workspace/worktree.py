"""Worktrees: name branches, create, reuse and remove a task's worktree.

Every function here is synchronous and runs git through ``supervisor.workspace.git``. The runner
calls ``ensure_worktree`` from a worker thread under one lock, because concurrent
``git worktree add`` calls race on git's own lock files.

Branch naming (README, "Branches and repeated runs"): a task's branch is the plan's ``branch``
or ``pagent/<plan>/<task>``. If that branch already exists when a new run starts (an earlier
night made it, or it is the user's own), the new run appends its run id
(``pagent/nightly/fix-1-20261124-020000-ab12``): an existing branch is never moved, reset or
deleted, so no earlier commit is lost or orphaned.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.errors import GitError
from supervisor.plan.model import Plan, Task
from supervisor.seam import CollectRequest, Facts, Workspace, WorkspaceRequest
from supervisor.workspace import facts
from supervisor.workspace.git import RepoInfo, git


def default_worktree_root(plan: Plan, repo: RepoInfo) -> Path:
    """Where worktrees go unless the plan says: ``<repo>.worktrees/<plan>`` beside the repository."""
    if plan.worktree_root is not None:
        return plan.worktree_root
    return repo.root.parent / f"{repo.root.name}.worktrees" / plan.name


def existing_branches(repo: Path) -> set[str]:
    """The names of every local branch."""
    out = git(["for-each-ref", "--format=%(refname:short)", "refs/heads/"], repo)
    return set(out.split())


def branch_for(plan: Plan, task: Task, run_id: str, taken: set[str]) -> str:
    """The branch a new run gives ``task``: its own name, or that name plus the run id if taken."""
    name = task.branch or f"pagent/{plan.name}/{task.id}"
    return name if name not in taken else f"{name}-{run_id}"


def worktree_path(root: Path, run_id: str, task: Task) -> Path:
    """A task's worktree: one directory per run and task, so runs never share one."""
    return root / run_id / task.id


def ensure_worktree(repo: Path, path: Path, branch: str, start: str) -> bool:
    """Make ``path`` a worktree of ``repo`` on ``branch`` (created at ``start`` if new).

    Reuses the worktree when it already exists on that branch (a retried task); returns True
    if it created one. Refuses (``GitError``) a path that exists but is something else.
    """
    if path.exists():
        if (path / ".git").exists():
            current = git(["symbolic-ref", "--quiet", "--short", "HEAD"], path, check=False).strip()
            if current == branch:
                return False
        raise GitError(f"{path} exists and is not the worktree of branch {branch}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if branch in existing_branches(repo):
        git(["worktree", "add", "--quiet", str(path), branch], repo)
    else:
        git(["worktree", "add", "--quiet", "-b", branch, str(path), start], repo)
    return True


def remove_worktree(repo: Path, path: Path, force: bool) -> None:
    """Remove one worktree (its branch stays); ``force`` also discards uncommitted changes."""
    git(["worktree", "remove", *(["--force"] if force else []), str(path)], repo)


def uncommitted(path: Path) -> list[str]:
    """``git status --porcelain`` lines of a worktree: what would be lost by removing it."""
    return [line for line in git(["status", "--porcelain"], path).splitlines() if line.strip()]


def prune(repo: Path) -> None:
    """Forget worktrees whose directories are gone."""
    git(["worktree", "prune"], repo)


def remove_marker(top: Path, marker: str | None) -> bool:
    """Remove a done marker from the workspace at ``top``; True if it was there.

    Never removes anything outside ``top``: a marker whose folder an agent turned into a
    symlink to somewhere else is left alone (and counts as absent).
    """
    if marker is None:
        return False
    path = top / marker
    try:
        parent = path.parent.resolve(strict=True)
    except OSError:
        return False
    if not parent.is_relative_to(top.resolve()):
        return False
    target = parent / path.name
    existed = target.is_file() or target.is_symlink()
    if existed:
        target.unlink(missing_ok=True)
    return existed


def changed_since(top: Path, commit: str) -> list[str]:
    """Paths that differ between ``commit`` and HEAD in the workspace at ``top``."""
    out = git(["diff", "--name-only", "--no-renames", commit, "HEAD"], top)
    return [line for line in out.splitlines() if line]


def workdir_in(top: Path, workdir: str | None) -> Path:
    """The agent's working directory ``workdir`` inside ``top``, made if missing; ``OSError`` if
    it is not a directory, or leads out of ``top`` (a symlink in the repository, say)."""
    if workdir is None:
        return top
    path = top / workdir
    path.mkdir(parents=True, exist_ok=True)
    if not path.resolve().is_relative_to(top.resolve()):
        raise OSError(f"workdir {workdir!r} leads outside the workspace (to {path.resolve()})")
    return path


class Worktrees:
    """Task workspaces as git worktrees of the plan's repository (the local executor's).

    ``branch = None`` in a request means no isolation: the agent works in the repository itself
    and nothing is created, committed or inspected.
    """

    def prepare(self, request: WorkspaceRequest) -> Workspace:
        """Create (or reuse) the task's worktree on its branch and its ``workdir``; ``GitError``
        or ``OSError`` if it cannot."""
        if request.branch is None:
            return Workspace(request.repo, None, None, cwd=workdir_in(request.repo, request.workdir))
        created = ensure_worktree(request.repo, request.path, request.branch, request.start)
        cwd = workdir_in(request.path, request.workdir)
        return Workspace(request.path, request.branch, facts.head(request.path), created, cwd)

    def begin(self, workspace: Workspace, marker: str | None) -> str:
        """Remove a stale done marker; the commit checked out now."""
        remove_marker(workspace.path, marker)
        return facts.head(workspace.path)

    def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        """The marker (removed), auto-commit, the attempt's changed paths, the diff stats."""
        marked = remove_marker(workspace.path, request.marker)
        exclude = [request.marker] if request.marker else []
        committed = False
        if request.auto_commit:
            message = (
                f"pagent: work left uncommitted by {request.task_id}, attempt {request.attempt} "
                f"({request.reason})"
            )
            committed = facts.auto_commit(workspace.path, message, exclude)
        changed = changed_since(workspace.path, request.head_before)
        diff = facts.diff_stats(workspace.path, request.start_commit)
        return Facts(marked, committed, tuple(changed), diff)
