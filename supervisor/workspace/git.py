"""Running git: one function for every git call pagent makes, and the plan's repository.

Every call is argv (never a shell), with no terminal prompt, in the C locale.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import GitError, PlanError
from supervisor.plan.model import Plan

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


def remote_problem(repo: Path, remote: str) -> str | None:
    """Why ``remote`` cannot be pushed to from ``repo`` ("no remote 'origin' in /repo"), or ``None``.

    Reads the repository's configuration only: nothing is contacted. A URL or a path is taken
    as it is (git pushes to those directly).
    """
    if "/" in remote or ":" in remote:
        return None
    try:
        git(["remote", "get-url", "--push", remote], repo)
    except GitError as exc:
        if "not installed" in str(exc):
            return str(exc)
        return f"no remote {remote!r} in {repo}"
    return None


def branch_of(repo: Path, ref: str | None) -> str | None:
    """The local branch ``ref`` names (``None``: the branch checked out in ``repo``); ``None``
    when it names no branch (a commit, a tag, a detached HEAD)."""
    if ref is None or ref == "HEAD":
        name = git(["symbolic-ref", "--quiet", "--short", "HEAD"], repo, check=False).strip()
        return name or None
    found = git(["rev-parse", "--verify", "--quiet", f"refs/heads/{ref}"], repo, check=False).strip()
    return ref if found else None
