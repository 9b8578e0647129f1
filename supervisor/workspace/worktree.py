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
