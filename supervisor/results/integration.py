"""After a wave: which succeeded tasks overlap, and merging their branches into one branch.

Pure git over the plan's repository: ``overlaps`` and ``merge_order`` are plain functions of
the tasks' changed paths; ``integrate`` merges task branches into the branch checked out in the
integration worktree and reports what happened. Only that branch moves: neither ``base`` nor a
task branch is ever rewritten. Merges skip hooks (``--no-verify``, and no hook runs for any git
call of pagent's) and signing. The run reserves the integration branch at its base commit when
it is recorded; before merging, ``after_wave`` requires the branch to be where pagent left it
(``Integration.expect``): a commit someone else put there (an agent, say) is pinned under
``refs/pagent/<run>/+integration/`` and the branch is reset to pagent's commit, so the
integration branch is always the base plus pagent's merges. ``after_wave`` is synchronous: the
runner calls it through ``supervisor.workspace.git.in_thread``, so a stop kills its git calls.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.errors import GitError
from supervisor.workspace import refs
from supervisor.workspace.facts import git_as_someone, head
from supervisor.workspace.git import git, shown
from supervisor.workspace.worktree import ensure_worktree

DEFAULT_MERGE_MESSAGE = "Merge {branch} (pagent task {task})"


@dataclass(frozen=True)
class Overlap:
    """Two tasks whose changes touch the same paths."""

    tasks: tuple[str, str]
    paths: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as an entry of ``overlaps`` in the run's status view."""
        return {"tasks": list(self.tasks), "paths": list(self.paths)}


@dataclass(frozen=True)
class MergeResult:
    """How merging one task branch into the integration branch went.

    ``commit`` is the merge commit made, or ``None`` when none was (the branch was already
    contained, or the merge did not happen). ``error`` is git's message when the merge was
    refused for a reason other than conflicts (unknown branch, files in the way).
    """

    task_id: str
    branch: str
    merged: bool
    conflicts: tuple[str, ...]
    commit: str | None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as an entry of ``integration.merges`` in the run's status view."""
        return {
            "task": self.task_id,
            "branch": self.branch,
            "merged": self.merged,
            "conflicts": list(self.conflicts),
            "commit": self.commit,
            "error": self.error,
        }


def overlaps(paths_by_task: Mapping[str, Sequence[str]]) -> list[Overlap]:
    """Every pair of tasks whose path sets intersect, in the given task order, paths sorted."""
    tasks = [(task, set(paths)) for task, paths in paths_by_task.items()]
    found: list[Overlap] = []
    for i, (first, first_paths) in enumerate(tasks):
        for second, second_paths in tasks[i + 1 :]:
            shared = first_paths & second_paths
            if shared:
                found.append(Overlap(tasks=(first, second), paths=tuple(sorted(shared))))
    return found


def merge_order(task_ids: Sequence[str], overlaps: Sequence[Overlap]) -> list[str]:
    """The order to merge ``task_ids`` in: fewest overlaps first, ties in the given order.

    A task's weight is the number of other tasks it overlaps with. Tasks that overlap with
    nobody merge cleanly in any order; putting the most-overlapping task last means it is the
    one left to conflict, instead of everything merged after it: with A overlapping B, C and D
    (which do not overlap each other), B, C, D, A risks one conflict where A first risks three.
    It is a greedy heuristic, not an optimum. Overlaps naming tasks outside ``task_ids`` are
    ignored.
    """
    wanted = set(task_ids)
    weight: Counter[str] = Counter()
    for overlap in overlaps:
        first, second = overlap.tasks
        if first in wanted and second in wanted:
            weight[first] += 1
            weight[second] += 1
    position = {task: i for i, task in enumerate(task_ids)}
    return sorted(dict.fromkeys(task_ids), key=lambda task: (weight[task], position[task]))


def integrate(
    worktree: Path, merges: Sequence[tuple[str, str]], message: str = DEFAULT_MERGE_MESSAGE
) -> list[MergeResult]:
    """Merge each ``(task_id, branch)`` in order into the branch checked out in ``worktree``.

    Each merge is ``git merge --no-ff --no-edit`` with ``message`` (a ``str.format`` template
    with ``{task}`` and ``{branch}``). A merge that conflicts is aborted, its conflicting paths
    recorded, and the next one goes on; so is a merge git refuses (``error`` says why). A branch
    already contained counts as merged. Only the checked-out branch moves: the task branches and
    the base are never rewritten. ``GitError`` if ``worktree`` has uncommitted changes to tracked
    files, because aborting a merge could lose them.
    """
    dirty = git(["status", "--porcelain", "--untracked-files=no", "--ignore-submodules"], worktree)
    if dirty.strip():
        raise GitError(f"{worktree}: uncommitted changes in the integration worktree")
    results: list[MergeResult] = []
    for task_id, branch in merges:
        results.append(_merge_one(worktree, task_id, branch, message.format(task=task_id, branch=branch)))
    return results


def _merge_one(worktree: Path, task_id: str, branch: str, message: str) -> MergeResult:
    """One merge of ``integrate``; leaves ``worktree`` as clean as it found it."""
    # Resolve first: a clear "no such branch", and the merge names a fixed commit.
    tip = git(["rev-parse", "--verify", "--quiet", f"{branch}^{{commit}}"], worktree, check=False).strip()
    if not tip:
        return MergeResult(task_id, branch, merged=False, conflicts=(), commit=None, error="no such branch")
    before = head(worktree)
    args = ["merge", "--no-ff", "--no-edit", "--no-verify", "--no-gpg-sign", "--quiet", "-m", message, tip]
    try:
        git_as_someone(worktree, args)
    except GitError as error:
        out = git(["diff", "--name-only", "-z", "--diff-filter=U"], worktree, check=False)
        conflicts = tuple(sorted(shown(p) for p in out.split("\0") if p))
        if _merge_in_progress(worktree):
            git(["merge", "--abort"], worktree)
        return MergeResult(
            task_id,
            branch,
            merged=False,
            conflicts=conflicts,
            commit=None,
            error=None if conflicts else str(error),
        )
    after = head(worktree)
    return MergeResult(task_id, branch, merged=True, conflicts=(), commit=None if after == before else after)


def _merge_in_progress(worktree: Path) -> bool:
    """True while a stopped merge waits to be concluded or aborted."""
    return bool(git(["rev-parse", "--verify", "--quiet", "MERGE_HEAD"], worktree, check=False).strip())


@dataclass(frozen=True)
class WaveFindings:
    """What the end of a wave found: overlaps so far, and the merges into the integration branch
    (``skipped`` is git's reason when the integration could not be done at all; ``tip`` the
    integration branch's commit afterwards; ``reset`` says what was put right first)."""

    overlaps: list[Overlap]
    merges: list[MergeResult]
    skipped: str | None = None
    tip: str | None = None
    reset: str | None = None


@dataclass(frozen=True)
class Integration:
    """Where a run merges its waves: the branch, its worktree, the commit it starts from."""

    repo: Path
    worktree: Path
    branch: str
    base_commit: str
    expect: str | None = None  # where pagent left the branch (None: nothing recorded, old runs)
    pins: str | None = None  # refs/pagent/<run>/+integration


def after_wave(
    paths: Mapping[str, Sequence[str]],
    succeeded: Sequence[tuple[str, str]],
    integration: Integration | None,
    wave_name: str,
) -> WaveFindings:
    """Overlaps between the succeeded tasks' changed ``paths`` (task id -> paths, in plan
    order), then -- with an integration branch -- the merges of this wave's ``succeeded``
    ``(task id, branch)`` pairs into it, fewest overlaps first. Returns what it found; the
    caller records it."""
    found = overlaps(paths)
    if integration is None or not succeeded:
        return WaveFindings(found, [])
    branches = dict(succeeded)
    order = merge_order([task_id for task_id, _ in succeeded], found)
    merges = [(task_id, branches[task_id]) for task_id in order]
    name = wave_name.replace("{", "{{").replace("}", "}}")
    message = f"pagent: merge {{branch}} ({name})"
    try:
        reset = _ready(integration)
        merged = integrate(integration.worktree, merges, message)
        tip = head(integration.worktree)
    except GitError as exc:
        return WaveFindings(found, [], skipped=str(exc))
    return WaveFindings(found, merged, tip=tip, reset=reset)


def _ready(integration: Integration) -> str | None:
    """The integration worktree on its branch, at the commit pagent left it at; what was put
    right to get there (a merge left half done by a stopped run, a foreign commit), if anything."""
    worktree, expect = integration.worktree, integration.expect
    start = expect or integration.base_commit
    ensure_worktree(integration.repo, worktree, integration.branch, start)
    notes = []
    if _merge_in_progress(worktree):  # a run stopped in the middle of a merge
        git(["merge", "--abort"], worktree)
        notes.append("aborted a merge a stopped run had left")
    found = head(worktree)
    if expect is not None and found != expect:
        where = "(not pinned)"
        if integration.pins is not None:
            pin = f"{integration.pins}/foreign-{found[:12]}"
            refs.pin(integration.repo, pin, found, f"found on {integration.branch}")
            where = f"pinned at {pin}"
        git(["reset", "--hard", "--quiet", expect], worktree)
        notes.append(f"{integration.branch} had been moved to {found[:12]} ({where}); reset to {expect[:12]}")
    return "; ".join(notes) or None
