"""``pagent clean``: remove a plan's worktrees, keep every branch.

All or nothing: if any worktree to remove holds uncommitted or untracked changes, nothing is
removed (one line per such worktree says what) unless ``force`` is given. Branches are never
deleted, so every commit stays reachable. Runs under the plan's lock, so no run can start (or
be active) meanwhile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import PagentError
from supervisor.plan.model import Plan
from supervisor.state.layout import Layout
from supervisor.state.lock import PlanLock
from supervisor.workspace.git import git, resolve_repo
from supervisor.workspace.worktree import default_worktree_root, prune, remove_worktree, uncommitted


class DirtyWorktrees(PagentError):
    """Some worktrees hold changes that removing them would lose; nothing was removed."""


@dataclass(frozen=True)
class Cleaned:
    """What ``clean`` removed, and the branches those worktrees were on (all kept)."""

    removed: list[Path]
    branches: list[str]


def plan_worktrees(repo: Path, root: Path) -> list[tuple[Path, str | None]]:
    """Every worktree of ``repo`` below ``root``, with its branch (``None`` when detached)."""
    found: list[tuple[Path, str | None]] = []
    path: Path | None = None
    branch: str | None = None
    for line in [*git(["worktree", "list", "--porcelain"], repo).splitlines(), ""]:
        if line.startswith("worktree "):
            path, branch = Path(line.removeprefix("worktree ")), None
        elif line.startswith("branch "):
            branch = line.removeprefix("branch refs/heads/")
        elif not line and path is not None:
            if path.is_relative_to(root):
                found.append((path, branch))
            path = None
    return found


def clean(plan: Plan, run_id: str | None, force: bool) -> Cleaned:
    """Remove the worktrees of ``plan`` (of run ``run_id`` only, if given); see the module doc."""
    repo = resolve_repo(plan)
    root = default_worktree_root(plan, repo).resolve()
    if run_id is not None:
        root = root / run_id
    layout = Layout.of(plan)
    layout.ensure()
    with PlanLock(layout.lock_file) as lock:
        lock.acquire(f"{plan.path.name}: cannot clean")
        worktrees = plan_worktrees(repo.root, root) if root.exists() else []
        if not force:
            dirty = []
            for path, _ in worktrees:
                if path.exists() and (changes := uncommitted(path)):
                    what = ", ".join(line[3:] for line in changes[:10])
                    more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
                    dirty.append(f"{path}: uncommitted changes: {what}{more}")
            if dirty:
                raise DirtyWorktrees(
                    "\n".join([*dirty, "nothing was removed; commit them, or use --force to discard them"])
                )
        for path, _ in worktrees:
            if path.exists():
                remove_worktree(repo.root, path, force=force)
        prune(repo.root)
        _remove_empty_dirs(root)
        return Cleaned([path for path, _ in worktrees], [b for _, b in worktrees if b is not None])


def _remove_empty_dirs(root: Path) -> None:
    """Remove the run directories (and ``root``) that removing worktrees left empty."""
    if not root.is_dir():
        return
    for child in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not any(child.iterdir()):
            child.rmdir()
    if not any(root.iterdir()):
        root.rmdir()
