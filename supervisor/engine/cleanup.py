"""``pagent clean``: remove the worktrees pagent created for a plan's runs, keep every branch.

Only what pagent created and recorded is touched: the worktrees of this plan's own runs (task
worktrees and each run's integration worktree, as the state database names them), each only if
git still lists it as a worktree of the plan's repository at that path, inside its run's
directory, and never the main worktree. A user's worktree or directory under the worktree
root, another plan's worktrees, anything a ``--run`` value could point at: never. ``--run``
takes only a known run id of this plan (``UsageError``, exit 2, otherwise). After the
removals, only the run directories pagent recorded are removed, and only if they are empty.

All or nothing: if any worktree to remove holds uncommitted or untracked changes (or its
``.git`` leads somewhere else), nothing is removed (one line per such worktree says what)
unless ``force`` is given. Before a worktree goes, its HEAD is pinned at
``refs/pagent/<run>/<task>/cleaned-<n>``, and branches are never deleted, so every commit stays
reachable. Runs under the plan's lock, so no run of the plan can start (or be active) meanwhile.

Clone workspaces (``workspace = "clone"``) are removed the same way: a recorded task path inside
its run's directory that git does not list as a worktree but that is a clone of the plan's
repository (``supervisor.workspace.clone.is_clone_of``). One holding uncommitted work or commits
the plan's repository lacks, or that cannot be trusted (tampered with), is refused like a dirty
worktree unless ``force``; before it goes, its HEAD is fetched into the repository and pinned at
``cleaned-<n>``, so not even ``--force`` loses a commit of an untampered clone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import GitError, PagentError, UsageError
from supervisor.plan.model import Plan
from supervisor.state.layout import Layout
from supervisor.state.lock import PlanLock
from supervisor.state.records import RunRecord
from supervisor.state.store import Store
from supervisor.state.views import find_run
from supervisor.workspace import clone, refs
from supervisor.workspace.git import git, owned_by, resolve_repo
from supervisor.workspace.gitdir import admin_dir, head_in, verified
from supervisor.workspace.worktree import prune, remove_worktree, uncommitted


class DirtyWorktrees(PagentError):
    """Some worktrees hold changes that removing them would lose; nothing was removed."""


@dataclass(frozen=True)
class Cleaned:
    """What ``clean`` removed, and the branches those worktrees were on (all kept)."""

    removed: list[Path]
    branches: list[str]


@dataclass(frozen=True)
class _Recorded:
    """One worktree a run of the plan recorded: where, on which branch, its pins' prefix."""

    path: Path
    branch: str
    run_dir: Path
    pins: str
    attempts: int = 0


def clean(plan: Plan, run_id: str | None, force: bool) -> Cleaned:
    """Remove the worktrees of ``plan``'s runs (of run ``run_id`` only, if given); see the
    module docstring."""
    repo = resolve_repo(plan)
    layout = Layout.of(plan)
    layout.ensure()
    with PlanLock(layout.lock_file) as lock:
        lock.acquire(f"{plan.path.name}: cannot clean")
        recorded = _recorded_worktrees(plan, layout, run_id)
        with owned_by(f"{plan.uid}:git:clean"):
            targets = _removable(repo.root, recorded)
            clones = _clones(repo.root, recorded, targets)
            if not force:
                _refuse_if_dirty(repo.root, targets, clones)
            for target in targets:
                if target.path.exists():
                    _pin_head(repo.root, target)
                    remove_worktree(repo.root, target.path, force=force)
            for target in clones:
                _pin_clone(repo.root, target)
                clone.remove_clone(repo.root, target.path, target.branch, force=True)
            prune(repo.root)
            targets += clones
        for run_dir in sorted({target.run_dir for target in recorded}):
            if run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
        return Cleaned([t.path for t in targets], [t.branch for t in targets])


def _recorded_worktrees(plan: Plan, layout: Layout, run_id: str | None) -> list[_Recorded]:
    """Every worktree the plan's runs (or run ``run_id``) recorded; ``UsageError`` for an
    unknown run id."""
    if not layout.database.exists():
        if run_id is not None:
            raise UsageError(f"{plan.path.name}: no run {run_id!r} (see 'pagent runs {plan.path.name}')")
        return []
    store = Store(layout.database)
    try:
        runs = [find_run(plan, store, run_id)] if run_id is not None else store.runs(plan.key)
        found: list[_Recorded] = []
        for run in runs:
            found += _of_run(run, store)
        return found
    finally:
        store.close()


def _of_run(run: RunRecord, store: Store) -> list[_Recorded]:
    """The worktrees one run recorded: its tasks' (isolated ones) and its integration worktree."""
    tasks = [t for t in store.tasks(run.run_id) if t.branch is not None and t.worktree]
    if run.worktrees:
        run_dir = Path(run.worktrees)
    elif tasks:  # older runs: <root>/<run id>/<task>, so the tasks' parent
        run_dir = Path(str(tasks[0].worktree)).parent
    else:
        return []
    found = [
        _Recorded(Path(str(t.worktree)), str(t.branch), run_dir, refs.pins(run.run_id, t.task_id), t.attempts)
        for t in tasks
    ]
    if run.integration_branch:
        pins = refs.integration_pins(run.run_id)
        found.append(_Recorded(run_dir / ".integration", run.integration_branch, run_dir, pins))
    return found


def _removable(repo: Path, recorded: list[_Recorded]) -> list[_Recorded]:
    """The recorded worktrees git lists as worktrees of ``repo`` (never the main one), each
    inside its run's directory."""
    listed = _listed(repo)
    main = os.path.realpath(repo)
    chosen = []
    for target in recorded:
        real = os.path.realpath(target.path)
        inside = real.startswith(os.path.realpath(target.run_dir) + os.sep)
        if real in listed and real != main and inside:
            chosen.append(target)
    return chosen


def _listed(repo: Path) -> set[str]:
    """The real paths of every worktree git lists for ``repo`` except the main one (the first)."""
    paths = [
        os.path.realpath(line.removeprefix("worktree "))
        for line in git(["worktree", "list", "--porcelain"], repo).splitlines()
        if line.startswith("worktree ")
    ]
    return set(paths[1:])


def _clones(repo: Path, recorded: list[_Recorded], worktrees: list[_Recorded]) -> list[_Recorded]:
    """The recorded task paths that are clones of ``repo`` (not worktrees), inside their run's
    directory."""
    chosen = []
    for target in recorded:
        real = os.path.realpath(target.path)
        if target in worktrees or not real.startswith(os.path.realpath(target.run_dir) + os.sep):
            continue
        if target.path.is_dir() and not target.path.is_symlink() and clone.is_clone_of(repo, target.path):
            chosen.append(target)
    return chosen


def _refuse_if_dirty(repo: Path, targets: list[_Recorded], clones: Sequence[_Recorded] = ()) -> None:
    """``DirtyWorktrees`` (removing nothing) if any target holds changes or cannot be trusted."""
    dirty = []
    for target in clones:
        try:
            dirt = clone.uncommitted_paths(repo, target.path, target.branch)
            ahead = clone.unfetched_commits(repo, target.path, target.branch)
        except GitError as exc:
            dirty.append(f"{target.path}: {exc}")
            continue
        if dirt or ahead:
            found = [f"uncommitted changes: {', '.join(dirt[:10])}"] if dirt else []
            found += [f"{ahead} commit(s) the repository lacks"] if ahead else []
            dirty.append(f"{target.path}: {' and '.join(found)}")
    for target in targets:
        if not target.path.exists():
            continue
        try:
            verified(repo, target.path)
        except GitError as exc:
            dirty.append(f"{target.path}: {exc}")
            continue
        if changes := uncommitted(target.path):
            what = ", ".join(line[3:] for line in changes[:10])
            more = f" and {len(changes) - 10} more" if len(changes) > 10 else ""
            dirty.append(f"{target.path}: uncommitted changes: {what}{more}")
    if dirty:
        raise DirtyWorktrees(
            "\n".join([*dirty, "nothing was removed; commit them, or use --force to discard them"])
        )


def _pin_clone(repo: Path, target: _Recorded) -> None:
    """Fetch a clone's HEAD into the repository at ``cleaned-<n>`` before it is removed (a clone
    that cannot be trusted any more is fetched from never)."""
    try:
        clone.check_clone(repo, target.path, target.branch)
    except GitError:
        return
    pin = f"{target.pins}/cleaned-{target.attempts}"
    git(
        ["fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--", str(target.path), f"+HEAD:{pin}"],
        repo,
    )


def _pin_head(repo: Path, target: _Recorded) -> None:
    """Pin the worktree's HEAD (read from the repository's side) before it is removed."""
    head = head_in(repo, admin_dir(repo, target.path))
    if head is not None:
        refs.pin(repo, f"{target.pins}/cleaned-{target.attempts}", head, f"HEAD of {target.path}, cleaned")
