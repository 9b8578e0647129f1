"""Git facts about a task's work in its workspace: its head, diff stats, auto-commit.

Every function here is synchronous and runs git through ``supervisor.workspace.git.git``
(argv, no shell, no hooks, bounded). None of them moves ``base`` or a task branch:
``auto_commit`` adds a commit on the branch checked out in the task's own worktree (its caller
checks first that this is the task's branch), and ``integrate`` only moves the branch checked
out in the integration worktree. Paths they report are printable (``git.shown``: a name that is
not UTF-8 shows its bytes as ``\xff``).

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
from collections.abc import Sequence
from pathlib import Path

from supervisor.errors import GitError
from supervisor.seam import DiffStats
from supervisor.workspace.git import git, shown

# The identity used when the repository has none configured (cron jobs often have no HOME
# config and no GIT_* environment); environment variables still win over ``-c`` when set.
FALLBACK_NAME = "pagent"
FALLBACK_EMAIL = "pagent@localhost"


def head(worktree: Path) -> str:
    """The commit sha HEAD points at in ``worktree``; ``GitError`` if there is none."""
    return git(["rev-parse", "--verify", "HEAD^{commit}"], worktree).strip()


def diff_stats(
    worktree: Path,
    base: str,
    exclude: Sequence[str] = (),
    head: str = "HEAD",
    *,
    uncommitted: bool | None = None,
) -> DiffStats:
    """Commits on ``head`` (HEAD, or the task branch's commit) not on ``base``, and the diff from
    their merge base to ``head``.

    ``uncommitted`` is true when ``git status`` shows any change, untracked files included,
    other than the ``exclude`` paths (e.g. a completion marker that is never committed); a
    caller that looked elsewhere (a clone's work tree, from the main repository) gives it.
    ``GitError`` if ``base`` is unknown or shares no history with ``head``.
    """
    commits = int(git(["rev-list", "--count", f"{base}..{head}"], worktree).strip())
    merge_base = git(["merge-base", base, head], worktree).strip()
    out = git(["diff", "--numstat", "-z", "--no-renames", "--no-ext-diff", merge_base, head], worktree)
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
        paths.append(shown(path))
    return DiffStats(
        commits=commits,
        files=files,
        insertions=insertions,
        deletions=deletions,
        paths=tuple(sorted(paths)),
        uncommitted=bool(changed_paths(worktree, exclude)) if uncommitted is None else uncommitted,
    )


def auto_commit(worktree: Path, message: str, exclude: Sequence[str] = ()) -> bool:
    """Commit everything left uncommitted in ``worktree`` except ``exclude``; True if it committed.

    Staged, unstaged, deleted and untracked changes (new directories included) all go in,
    whatever state the agent left the index in. An ``exclude`` path (relative to the worktree,
    or absolute inside it; a directory excludes everything under it) is never committed, even
    if the agent staged it: it is unstaged and left in the worktree as it is.
    """
    if not changed_paths(worktree, exclude):
        return False
    # Only what git status shows needs excluding: naming an ignored path (a copied .env) in a
    # pathspec makes ``git add`` fail, and it would not be added anyway.
    shown = changed_paths(worktree, ())
    excluded = [
        ex for ex in _normalise(worktree, exclude) if any(p == ex or p.startswith(ex + "/") for p in shown)
    ]
    git(["add", "--all", "--", ".", *(f":(top,exclude,literal){p}" for p in excluded)], worktree)
    if excluded:
        # The agent may have staged an excluded path itself; reset restores HEAD's entry (or
        # none). Literal pathspecs, because a marker's name may contain glob characters.
        git(["--literal-pathspecs", "reset", "--quiet", "--", *excluded], worktree)
    if not git(["diff", "--cached", "--name-only", "-z"], worktree):
        return False
    git_as_someone(worktree, ["commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m", message])
    return True


def git_as_someone(worktree: Path, args: list[str]) -> str:
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


def changed_paths(worktree: Path, exclude: Sequence[str]) -> list[str]:
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
