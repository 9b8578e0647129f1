"""Git facts about a task's work: diff stats, auto-commit, overlaps, merge order, integration.

Every function here is synchronous and runs git through ``supervisor.worktree.git`` (argv, no
shell). None of them moves ``base`` or a task branch: ``auto_commit`` adds a commit on the
branch checked out in the task's own worktree, and ``integrate`` only moves the branch checked
out in the integration worktree.

Decisions worth knowing:

- Renames: diffs and status run with ``--no-renames``, so a renamed file counts as two files,
  the old path deleted and the new path added, and both paths are listed. That keeps the numbers
  independent of the user's ``diff.renames`` setting and makes ``overlaps`` see a task that
  renames a file another task edits.
- Binary files count as changed files with 0 insertions and 0 deletions.
- Commits made here skip hooks (``--no-verify``) and signing (``--no-gpg-sign``): they happen
  unattended, where a failing pre-commit hook or a missing pinentry would leave the work
  uncommitted or hang the night.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.errors import GitError
from supervisor.worktree import git

# The identity used when the repository has none configured (cron jobs often have no HOME
# config and no GIT_* environment); environment variables still win over ``-c`` when set.
FALLBACK_NAME = "pagent"
FALLBACK_EMAIL = "pagent@localhost"

DEFAULT_MERGE_MESSAGE = "Merge {branch} (pagent task {task})"


@dataclass(frozen=True)
class DiffStats:
    """What a task changed relative to its base: commits ahead and the diff of the merge base."""

    commits: int
    files: int
    insertions: int
    deletions: int
    paths: tuple[str, ...]
    uncommitted: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``diff`` in a task's status view."""
        return {
            "commits": self.commits,
            "files": self.files,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "paths": list(self.paths),
            "uncommitted": self.uncommitted,
        }


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


def head(worktree: Path) -> str:
    """The commit sha HEAD points at in ``worktree``; ``GitError`` if there is none."""
    return git(["rev-parse", "--verify", "HEAD^{commit}"], worktree).strip()


def diff_stats(worktree: Path, base: str, exclude: Sequence[str] = ()) -> DiffStats:
    """Commits on HEAD not on ``base``, and the diff from their merge base to HEAD.

    ``uncommitted`` is true when ``git status`` shows any change, untracked files included,
    other than the ``exclude`` paths (e.g. a completion marker that is never committed).
    ``GitError`` if ``base`` is unknown or shares no history with HEAD.
    """
    commits = int(git(["rev-list", "--count", f"{base}..HEAD"], worktree).strip())
    merge_base = git(["merge-base", base, "HEAD"], worktree).strip()
    out = git(["diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", merge_base, "HEAD"], worktree)
    files = insertions = deletions = 0
    paths: list[str] = []
    # With -z each record is "added<TAB>deleted<TAB>path<NUL>"; binary files show "-" counts.
    for record in out.split("\0"):
        if not record:
            continue
        added, deleted, path = record.split("\t", 2)
        files += 1
        insertions += int(added) if added.isdigit() else 0
        deletions += int(deleted) if deleted.isdigit() else 0
        paths.append(path)
    return DiffStats(
        commits=commits,
        files=files,
        insertions=insertions,
        deletions=deletions,
        paths=tuple(sorted(paths)),
        uncommitted=bool(_changed_paths(worktree, exclude)),
    )


def auto_commit(worktree: Path, message: str, exclude: Sequence[str] = ()) -> bool:
    """Commit everything left uncommitted in ``worktree`` except ``exclude``; True if it committed.

    Staged, unstaged, deleted and untracked changes (new directories included) all go in,
    whatever state the agent left the index in. An ``exclude`` path (relative to the worktree,
    or absolute inside it; a directory excludes everything under it) is never committed, even
    if the agent staged it: it is unstaged and left in the worktree as it is.
    """
    if not _changed_paths(worktree, exclude):
        return False
    excluded = _normalise(worktree, exclude)
    git(["add", "--all", "--", ".", *(f":(top,exclude,literal){p}" for p in excluded)], worktree)
    if excluded:
        # The agent may have staged an excluded path itself; reset restores HEAD's entry (or
        # none). Literal pathspecs, because a marker's name may contain glob characters.
        git(["--literal-pathspecs", "reset", "--quiet", "--", *excluded], worktree)
    if not git(["diff", "--cached", "--name-only", "-z"], worktree):
        return False
    _git_as_someone(worktree, ["commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m", message])
    return True


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
        _git_as_someone(worktree, args)
    except GitError as error:
        out = git(["diff", "--name-only", "-z", "--diff-filter=U"], worktree, check=False)
        conflicts = tuple(sorted(p for p in out.split("\0") if p))
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


def _git_as_someone(worktree: Path, args: list[str]) -> str:
    """``git args`` that makes a commit, with a fallback identity where none is configured."""
    identity: list[str] = []
    if not git(["config", "user.name"], worktree, check=False).strip():
        identity += ["-c", f"user.name={FALLBACK_NAME}"]
    if not git(["config", "user.email"], worktree, check=False).strip():
        identity += ["-c", f"user.email={FALLBACK_EMAIL}"]
    try:
        return git([*identity, *args], worktree)
    except GitError as error:
        # git() names the first two arguments, which would be "-c user.name=...".
        if not identity:
            raise
        detail = str(error).split(": ", 1)[-1]
        raise GitError(f"git {args[0]}: {detail}") from None


def _normalise(worktree: Path, paths: Sequence[str]) -> list[str]:
    """Excluded paths as POSIX paths relative to the worktree's top, without trailing slashes."""
    top = worktree.resolve()
    result: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_absolute():
            path = Path(os.path.relpath(path.resolve(), top))
        text = path.as_posix().rstrip("/")
        if text and text != ".":
            result.append(text)
    return result


def _changed_paths(worktree: Path, exclude: Sequence[str]) -> list[str]:
    """Paths ``git status`` reports as changed or untracked, minus ``exclude`` and what is under it."""
    out = git(["status", "--porcelain", "-z", "--no-renames", "--untracked-files=all"], worktree)
    excluded = _normalise(worktree, exclude)
    changed: list[str] = []
    # With -z and --no-renames each record is "XY path"; paths are relative to the top.
    for record in out.split("\0"):
        if len(record) < 4:
            continue
        path = record[3:]
        if not any(path == ex or path.startswith(ex + "/") for ex in excluded):
            changed.append(path)
    return changed
