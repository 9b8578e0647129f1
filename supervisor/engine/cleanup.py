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

Two things of a task's settings (the plan as it is now) take part: its ``copy`` entries are not
counted as changes (pagent put them there; they are never committed), and its ``teardown``
hooks run, through the executor, just before its worktree (or clone) is removed
(``supervisor.engine.teardown``: a failure is a warning, the worktree goes all the same, with
whatever the teardown left in it).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from supervisor.agents.base import Kinds
from supervisor.engine.teardown import Teardown, teardown_all
from supervisor.errors import GitError, PagentError, UsageError
from supervisor.plan.model import Plan
from supervisor.seam import Executor
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
    warnings: list[str] = field(default_factory=list)  # teardown hooks that failed


@dataclass(frozen=True)
class _Recorded:
    """One worktree a run of the plan recorded: where, on which branch, its pins' prefix."""

    path: Path
    branch: str
    run_dir: Path
    pins: str
    attempts: int = 0
    run_id: str = ""
    task_id: str | None = None  # None: the run's integration worktree


def clean(
    plan: Plan, run_id: str | None, force: bool, executor: Executor | None = None, kinds: Kinds | None = None
) -> Cleaned:
    """Remove the worktrees of ``plan``'s runs (of run ``run_id`` only, if given); see the
    module docstring. ``executor`` runs the tasks' ``teardown`` hooks (``None``: none run),
    confined as their attempts were (``kinds`` names what their agents may write)."""
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
                _refuse_if_dirty(repo.root, targets, clones, _copied(plan))
            warnings: list[str] = []
            torn = _teardowns(plan, [*targets, *clones])
            if torn and executor is not None:
                warnings = anyio.run(functools.partial(teardown_all, plan, repo.root, executor, torn, kinds))
            for target in targets:
                if target.path.exists():
                    _pin_head(repo.root, target)
                    # Checked above: what is left are copies, or what a teardown left behind.
                    remove_worktree(repo.root, target.path, force=True)
            for target in clones:
                _pin_clone(repo.root, target)
                clone.remove_clone(repo.root, target.path, target.branch, force=True)
            prune(repo.root)
            targets += clones
        for run_dir in sorted({target.run_dir for target in recorded}):
            if run_dir.is_dir() and not any(run_dir.iterdir()):
                run_dir.rmdir()
        return Cleaned([t.path for t in targets], [t.branch for t in targets], warnings)


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
        _Recorded(
            Path(str(t.worktree)),
            str(t.branch),
            run_dir,
            refs.pins(run.run_id, t.task_id),
            t.attempts,
            run.run_id,
            t.task_id,
        )
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


def _copied(plan: Plan) -> dict[str, tuple[str, ...]]:
    """Each task's ``copy`` entries: paths pagent put into its worktree, not the agent's work."""
    return {task.id: task.settings.copy for task in plan.tasks if task.settings.copy}


def _teardowns(plan: Plan, targets: list[_Recorded]) -> list[Teardown]:
    """The targets whose task (still in the plan) has ``teardown`` hooks."""
    hooks = {task.id for task in plan.tasks if task.settings.teardown}
    return [
        Teardown(t.run_id, t.task_id, t.path, t.branch, t.attempts)
        for t in targets
        if t.task_id is not None and t.task_id in hooks and t.path.exists()
    ]


def _refuse_if_dirty(
    repo: Path,
    targets: list[_Recorded],
    clones: Sequence[_Recorded] = (),
    copied: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """``DirtyWorktrees`` (removing nothing) if any target holds changes (other than what
    ``copy`` put there) or cannot be trusted."""
    copied = copied or {}
    dirty = []
    for target in clones:
        try:
            ours = copied.get(target.task_id or "", ())
            listed = clone.uncommitted_paths(repo, target.path, target.branch, every_file=bool(ours))
            dirt = [p for p in listed if not _is_copy(p, ours)]
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
        ours = copied.get(target.task_id or "", ())
        lines = uncommitted(target.path, every_file=bool(ours))  # copies: file by file
        changes = [line for line in lines if not _is_copy(line[3:], ours)]
        if changes:
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


def _is_copy(path: str, copied: tuple[str, ...]) -> bool:
    """Whether ``path`` (as ``git status`` shows it; a directory ends in ``/``) is one of, or
    inside one of, the ``copied`` entries."""
    path = path.strip('"').rstrip("/")
    return any(path == entry.rstrip("/") or path.startswith(entry.rstrip("/") + "/") for entry in copied)


def _pin_head(repo: Path, target: _Recorded) -> None:
    """Pin the worktree's HEAD (read from the repository's side) before it is removed."""
    head = head_in(repo, admin_dir(repo, target.path))
    if head is not None:
        refs.pin(repo, f"{target.pins}/cleaned-{target.attempts}", head, f"HEAD of {target.path}, cleaned")
