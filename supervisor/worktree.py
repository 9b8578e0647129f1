"""Git: find the repository and base, name branches, create and remove worktrees.

Every function here is synchronous and runs git as a subprocess (argv, no shell). The runner
calls ``ensure_worktree`` from a worker thread under one lock, because concurrent
``git worktree add`` calls race on git's own lock files.

Branch naming (README, "Branches and repeated runs"): a task's branch is the plan's ``branch``
or ``pagent/<plan>/<task>``. If that branch already exists when a new run starts (an earlier
night made it, or it is the user's own), the new run appends its run id
(``pagent/nightly/fix-1-20261124-020000-ab12``): an existing branch is never moved, reset or
deleted, so no earlier commit is lost or orphaned.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import GitError, PlanError
from supervisor.plan import Plan, Task

_GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


def git(args: Iterable[str], cwd: Path, check: bool = True) -> str:
    """Run ``git args`` in ``cwd`` and return its stdout; ``GitError`` with git's stderr on failure."""
    argv = ["git", *args]
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            env={**os.environ, **_GIT_ENV},
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except FileNotFoundError:
        raise GitError("git is not installed (not found on PATH)") from None
    if check and done.returncode != 0:
        detail = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise GitError(f"git {' '.join(argv[1:3])}: {detail[-1] if detail else f'exit {done.returncode}'}")
    return done.stdout


@dataclass(frozen=True)
class RepoInfo:
    """The repository a plan works on and the commit its worktrees start from."""

    root: Path
    base_ref: str
    base_commit: str


def resolve_repo(plan: Plan) -> RepoInfo:
    """Find the plan's repository and base commit; ``PlanError`` (exit 2) if either is wrong."""
    start = plan.repo if plan.repo is not None else plan.plan_dir
    if not start.is_dir():
        raise PlanError(f"{plan.path.name}: repo: no such directory: {start}")
    try:
        root = Path(git(["rev-parse", "--show-toplevel"], start).strip())
    except GitError:
        raise PlanError(f"{plan.path.name}: repo: not inside a git repository: {start}") from None
    base_ref = plan.base or "HEAD"
    try:
        commit = git(["rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}"], root).strip()
    except GitError:
        what = "the repository has no commit yet" if plan.base is None else "no such commit"
        raise PlanError(f"{plan.path.name}: base: {base_ref!r}: {what}") from None
    return RepoInfo(root=root, base_ref=base_ref, base_commit=commit)


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
