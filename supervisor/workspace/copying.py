"""Files a new workspace needs that git does not bring: ``copy`` and ``.worktreeinclude``.

A fresh worktree has only what the branch tracks: no ``.env``, no local configuration. Two
sources name what to copy from the main worktree (the plan's repository) to the same relative
paths in the task's workspace:

- the task's ``copy`` entries: files or directories, each of which must exist (a missing one
  fails the workspace: the plan said the task needs it);
- the repository's ``.worktreeinclude``, the file Claude Code reads for the worktrees it
  creates: ``.gitignore`` syntax at the top of the main worktree, and only files that match a
  pattern *and* are git-ignored there are copied (so nothing tracked is duplicated). Without the
  file, nothing; a ``.worktreeinclude`` that is not a regular file (a symlink, a FIFO) is refused.

Rules, for both: a symlink is followed only while it stays inside the main worktree (one that
leads out of it fails the workspace, so nothing outside the repository is ever copied); nothing
in ``.git`` is copied; a file the workspace already has is never overwritten (a tracked one,
or one copied earlier: copying runs whenever the workspace is prepared, so a file added to the
main worktree after a failure is there on the retry); nothing is created outside the workspace
(a directory of the workspace that is a symlink elsewhere is refused). Anything else that is
not a regular file or a directory (a FIFO, a device) is refused.

``copy_in`` returns what pagent must never commit there: the copied paths that the branch does
not track (a directory entry that holds tracked files is replaced by its untracked files).
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Sequence
from pathlib import Path

from supervisor.errors import GitError
from supervisor.workspace.git import git, run_git

INCLUDE_FILE = ".worktreeinclude"


def copy_in(repo: Path, workspace: Path, entries: Sequence[str]) -> tuple[str, ...]:
    """Copy ``entries`` and the ``.worktreeinclude`` files of the main worktree ``repo`` into
    ``workspace`` (see the module docstring); the paths never to commit. ``OSError`` (one line)
    when something cannot be copied."""
    included = included_files(repo)
    top, into = os.path.realpath(repo), os.path.realpath(workspace)
    for entry in entries:
        if not os.path.lexists(repo / entry):
            raise OSError(f"copy: {entry!r}: no such file or directory in the main worktree {repo}")
    for entry in [*entries, *included]:
        _Copier(top, into).copy(repo / entry, workspace / entry, entry)
    return _untracked(workspace, list(dict.fromkeys([*entries, *included])))


def included_files(repo: Path) -> list[str]:
    """The untracked files of ``repo`` that ``.worktreeinclude`` names and git ignores."""
    path = repo / INCLUDE_FILE
    try:
        info = path.lstat()
    except FileNotFoundError:
        return []
    if not stat.S_ISREG(info.st_mode):
        raise OSError(f"{INCLUDE_FILE}: not a regular file in the main worktree {repo}")
    listed = git(["ls-files", "-z", "--others", "--ignored", f"--exclude-from={path}"], repo)
    candidates = [name for name in listed.split("\0") if name]
    if not candidates:
        return []
    done = run_git(["check-ignore", "-z", "--stdin"], repo, stdin="\0".join(candidates) + "\0")
    if done.code not in (0, 1):  # 1: none of them is ignored
        raise GitError(f"git check-ignore: {done.last_line()}")
    return sorted(name for name in done.stdout.split("\0") if name)


class _Copier:
    """Copies one entry from the main worktree ``top`` into the workspace ``into`` (real paths)."""

    def __init__(self, top: str, into: str) -> None:
        self.top, self.into = top, into
        self.seen: set[str] = set()  # directories being copied: a symlink back to one is a loop

    def copy(self, src: Path, dst: Path, entry: str) -> None:
        """Copy ``src`` to ``dst`` (see the module docstring for the rules)."""
        real = Path(os.path.realpath(src))
        if not _inside(str(real), self.top):
            raise OSError(f"copy: {entry!r} leads out of the main worktree (to {real})")
        if ".git" in real.relative_to(self.top).parts:
            raise OSError(f"copy: {entry!r} leads into git's own '.git'")
        info = real.stat()
        if stat.S_ISDIR(info.st_mode):
            if str(real) in self.seen:
                return
            self.seen.add(str(real))
            _make_dir(dst, self.into, entry)
            for child in sorted(real.iterdir()):
                if child.name != ".git":
                    self.copy(child, dst / child.name, f"{entry}/{child.name}")
        elif stat.S_ISREG(info.st_mode):
            if os.path.lexists(dst):
                return  # never over a file the workspace has
            _make_dir(dst.parent, self.into, entry)
            shutil.copy2(real, dst)
        else:
            raise OSError(f"copy: {entry!r} is neither a regular file nor a directory")


def _make_dir(path: Path, into: str, entry: str) -> None:
    """Make directory ``path`` (and its parents) inside the workspace ``into``, never elsewhere."""
    existing = path
    while not os.path.lexists(existing):
        existing = existing.parent
    if not _inside(os.path.realpath(existing), into):
        raise OSError(f"copy: {entry!r} would be written outside the workspace (through {existing})")
    path.mkdir(parents=True, exist_ok=True)


def _inside(real: str, top: str) -> bool:
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _untracked(workspace: Path, paths: list[str]) -> tuple[str, ...]:
    """Of ``paths``, those the workspace's branch does not track; a directory holding tracked
    files is replaced by its untracked (not ignored) files."""
    found: list[str] = []
    for path in paths:
        if not git(["ls-files", "-z", "--", f":(literal){path}"], workspace):
            found.append(path)
            continue
        others = git(
            ["ls-files", "-z", "--others", "--exclude-standard", "--", f":(literal){path}"], workspace
        )
        found += [name for name in others.split("\0") if name]
    return tuple(found)
