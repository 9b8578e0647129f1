"""Worktrees: where a plan's worktrees go, creating and reusing a task's, checking and removing one.

Every function here is synchronous and runs git through ``supervisor.workspace.git`` (bounded,
no hooks); ``Worktrees`` (``supervisor.workspace.local``) calls them from worker threads whose
git calls die when the awaiting task is cancelled, and the local executor creates worktrees one
at a time, because concurrent ``git worktree add`` calls race on git's own lock files.

What pagent trusts about a worktree is checked against the plan's repository first
(``supervisor.workspace.gitdir``): a worktree whose ``.git`` an agent pointed elsewhere is
reused for nothing.

Branches (README, "Branches and repeated runs") are reserved when the run is recorded
(``supervisor.workspace.refs``); ``ensure_worktree`` uses a reserved branch only at the commit
pagent recorded for it. An existing branch that pagent did not reserve is never moved, reset
or deleted.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.errors import GitError
from supervisor.plan.model import Plan, Task
from supervisor.workspace import refs
from supervisor.workspace.git import RepoInfo, commit_of, git, is_ancestor, shown
from supervisor.workspace.gitdir import admin_dir, verified, where


def default_worktree_root(plan: Plan, repo: RepoInfo) -> Path:
    """Where worktrees go unless the plan says: ``<repo>.worktrees/<name>-<uid>`` beside the
    repository (the uid makes two plans with one name, e.g. two ``plan.toml``, never share it)."""
    if plan.worktree_root is not None:
        return plan.worktree_root
    return repo.root.parent / f"{repo.root.name}.worktrees" / f"{plan.name.replace('/', '-')}-{plan.uid}"


def worktree_path(root: Path, run_id: str, task: Task) -> Path:
    """A task's worktree: one directory per run and task, so runs never share one."""
    return root / run_id / task.id


def onto_branch(path: Path, branch: str) -> bool:
    """Put HEAD back on ``branch`` in the (verified) worktree at ``path`` if it is elsewhere;
    True if it moved it. Detached exactly at the branch's commit, HEAD is just re-attached;
    otherwise the branch is checked out, which git refuses (``GitError``) when uncommitted
    changes would be carried along or lost."""
    head, on = where(path)
    if on == branch:
        return False
    if head is not None and head == commit_of(path, f"refs/heads/{branch}"):
        git(["symbolic-ref", "-m", "pagent: back on the task branch", "HEAD", f"refs/heads/{branch}"], path)
        return True
    if git(["status", "--porcelain", "--untracked-files=no"], path).strip():
        raise GitError(f"{path}: HEAD is not on {branch} and there are uncommitted changes")
    git(["checkout", "--quiet", "--no-guess", branch, "--"], path)
    return True


def ensure_worktree(
    repo: Path,
    path: Path,
    branch: str,
    start: str,
    *,
    expect: str | None = None,
    fresh: bool = True,
    pins: str | None = None,
) -> bool:
    """Make ``path`` a worktree of ``repo`` on ``branch``; True if it created one.

    ``expect`` is the commit pagent recorded for the branch (``None``: nothing recorded, the
    branch is created at ``start`` if missing, else used as it is). With ``fresh`` (the task has
    not run yet) the branch must be exactly there: a foreign commit is pinned at
    ``<pins>/planted`` and the branch moved (only if nobody moved it meanwhile) to ``start``;
    otherwise it must still descend from ``expect``. An existing ``path`` is reused when it is
    the worktree of ``branch`` (HEAD is put back on it if an attempt left it elsewhere).
    ``GitError`` names what is wrong otherwise.
    """
    ref = f"refs/heads/{branch}"
    tip = commit_of(repo, ref)
    if path.exists():
        if admin_dir(repo, path) is None:
            raise GitError(f"{path} exists and is not the worktree of branch {branch}")
        verified(repo, path)
        onto_branch(path, branch)
        tip = commit_of(repo, ref)
        if expect is not None and tip is not None and not is_ancestor(repo, expect, tip):
            raise GitError(f"branch {branch} was rewritten since pagent recorded it at {expect[:12]}")
        return False
    if tip is None:
        if expect is not None and not fresh:
            where = f" (its commits are pinned under {pins})" if pins else ""
            raise GitError(f"branch {branch} is gone{where}")
        path.parent.mkdir(parents=True, exist_ok=True)
        git(["worktree", "add", "--quiet", "-b", branch, str(path), start], repo)
        return True
    claim_branch(repo, branch, start, tip, expect=expect, fresh=fresh, pins=pins)
    path.parent.mkdir(parents=True, exist_ok=True)
    git(["worktree", "add", "--quiet", str(path), branch], repo)
    return True


def ensure_branch(
    repo: Path,
    branch: str,
    start: str,
    *,
    expect: str | None,
    fresh: bool,
    pins: str | None,
) -> None:
    """For a workspace that is not a worktree of ``repo`` (a clone, a remote one): the task's
    ``branch`` created at ``start`` when it does not exist (unless pagent recorded it before and
    the task is not fresh: it is gone, ``GitError``), else checked as ``claim_branch`` does."""
    ref = f"refs/heads/{branch}"
    tip = commit_of(repo, ref)
    if tip is not None:
        claim_branch(repo, branch, start, tip, expect=expect, fresh=fresh, pins=pins)
        return
    if expect is not None and not fresh:
        raise GitError(f"branch {branch} is gone (its commits are pinned under {pins})")
    target = commit_of(repo, start)
    if target is None:
        raise GitError(f"{start!r} names no commit")
    git(["update-ref", "-m", "pagent: the task's branch", ref, target, ""], repo)


def checked_tip(repo: Path, branch: str, *, expect: str | None, pins: str | None) -> str:
    """Where ``branch`` is now, which must descend from where pagent recorded it (``expect``);
    ``GitError`` when it is gone or was rewritten."""
    tip = commit_of(repo, f"refs/heads/{branch}")
    if tip is None:
        raise GitError(f"branch {branch} is gone (its commits are pinned under {pins})")
    if expect is not None and not is_ancestor(repo, expect, tip):
        raise GitError(f"branch {branch} was rewritten since pagent recorded it at {expect[:12]}")
    return tip


def claim_branch(
    repo: Path,
    branch: str,
    start: str,
    tip: str,
    *,
    expect: str | None,
    fresh: bool,
    pins: str | None,
) -> None:
    """Check the existing ``branch`` (at ``tip``) is where pagent recorded it (``expect``; see
    ``ensure_worktree``): on a fresh task a foreign commit is pinned at ``<pins>/planted`` and
    the branch moved to ``start``; later it must descend from ``expect`` (``GitError``)."""
    ref = f"refs/heads/{branch}"
    if expect is not None and fresh:
        target = commit_of(repo, start)
        if target is None:
            raise GitError(f"{start!r} names no commit")
        if tip != expect and pins is not None:
            refs.pin(repo, f"{pins}/planted", tip, f"found on {branch} before its task ran")
        if tip != target:  # old value given: only if nobody moved it since we looked
            git(["update-ref", "-m", "pagent: the task's start", ref, target, tip], repo)
    elif expect is not None and not is_ancestor(repo, expect, tip):
        raise GitError(f"branch {branch} was rewritten since pagent recorded it at {expect[:12]}")


def remove_worktree(repo: Path, path: Path, force: bool) -> None:
    """Remove one worktree (its branch stays); ``force`` also discards uncommitted changes."""
    git(["worktree", "remove", *(["--force"] if force else []), str(path)], repo)


def uncommitted(path: Path, *, every_file: bool = False) -> list[str]:
    """``git status --porcelain`` lines of a worktree (printable): what removing it would lose;
    ``every_file``: each untracked file on its own line (not its directory)."""
    args = ["status", "--porcelain", *(["--untracked-files=all"] if every_file else [])]
    return [shown(line) for line in git(args, path).splitlines() if line.strip()]


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
    """Paths (printable) that differ between ``commit`` and HEAD in the workspace at ``top``."""
    out = git(["diff", "--name-only", "-z", "--no-renames", commit, "HEAD"], top)
    return [shown(path) for path in out.split("\0") if path]


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
