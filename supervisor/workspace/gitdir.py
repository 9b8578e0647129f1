"""Which git directory a worktree really uses, and where its HEAD is -- never taken on its word.

An agent owns its worktree, ``.git`` file included, and can write the repository's own files
too. Before pagent commits, pins or inspects anything in a worktree, ``verified`` shows that the
worktree's ``.git`` is a file leading to its administrative directory
(``<common dir>/worktrees/<id>``), that this directory records the worktree's path back
(``gitdir``), and that it belongs to the plan's repository (``commondir``) -- exactly what git
itself reads to decide where the worktree's HEAD, index and refs are. A ``.git`` rewritten to
``gitdir: <repo>/.git`` (where pagent's auto-commit would land on ``main``), a ``.git``
directory, a worktree gone: ``GitError``, and pagent touches nothing there.

These are plain reads of small files (a FIFO or a directory where a file belongs is refused
without blocking: this runs outside git's time bound), plus one cached git call per repository.
"""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from supervisor.errors import GitError
from supervisor.workspace.git import commit_of, git, run_git


@functools.lru_cache(maxsize=64)
def common_dir(repo: Path) -> Path:
    """The repository's common git directory (``<repo>/.git``), resolved; asked once per repo."""
    return (repo / git(["rev-parse", "--git-common-dir"], repo).strip()).resolve()


def admin_dir(repo: Path, path: Path) -> Path | None:
    """The administrative directory of the worktree at ``path``, as ``repo`` records it; ``None``
    if ``path`` is no worktree of ``repo``. Found through the worktree's ``.git`` when that is
    true to the repository, else by the path each of the repository's worktrees records."""
    worktrees = common_dir(repo) / "worktrees"
    claimed = _claimed(path)
    if claimed is not None and claimed.parent == worktrees and _belongs(claimed, repo, path):
        return claimed
    try:
        entries = sorted(worktrees.iterdir())
    except OSError:
        return None
    return next((entry for entry in entries if _belongs(entry, repo, path)), None)


def verified(repo: Path, path: Path) -> Path:
    """``path``'s administrative directory, once its ``.git`` is shown to lead there (see the
    module docstring); ``GitError`` otherwise."""
    admin = admin_dir(repo, path)
    if admin is None:
        raise GitError(f"{path} is not a worktree of {repo} (any more)")
    claimed = _claimed(path)
    if claimed != admin:
        where = "nowhere git would read" if claimed is None else str(claimed)
        raise GitError(f"{path}/.git leads to {where}, not to its worktree ({admin}): not touched")
    return admin


def head_in(repo: Path, admin: Path | None) -> str | None:
    """The commit a worktree's HEAD is at, read from the repository's side."""
    return None if admin is None else commit_of(repo, f"worktrees/{admin.name}/HEAD")


def where(path: Path) -> tuple[str | None, str | None]:
    """The commit HEAD is at in the (verified) worktree at ``path`` and the branch it is on
    (``None``: detached; ``(None, branch)`` on a branch without commits), in one git call."""
    done = run_git(["rev-parse", "HEAD", "--symbolic-full-name", "HEAD"], path)
    if done.code == 0:
        head, _, name = done.stdout.strip().partition("\n")
        return head, (name.removeprefix("refs/heads/") if name.startswith("refs/heads/") else None)
    name = git(["symbolic-ref", "--quiet", "HEAD"], path, check=False).strip()
    return None, (name.removeprefix("refs/heads/") if name.startswith("refs/heads/") else None)


def _claimed(path: Path) -> Path | None:
    """Where the worktree's ``.git`` file says its git directory is (``None``: not such a file)."""
    text = _small_file(path / ".git")
    if text is None or not text.startswith("gitdir: "):
        return None
    return Path(os.path.realpath(path / text.removeprefix("gitdir: ").strip()))


def _belongs(admin: Path, repo: Path, path: Path) -> bool:
    """Whether ``admin`` records ``path`` as its worktree and ``repo``'s common dir as its own."""
    recorded = _small_file(admin / "gitdir")  # "<worktree>/.git", relative to admin if not absolute
    if recorded is None:
        return False
    if os.path.realpath((admin / recorded.strip()).parent) != os.path.realpath(path):
        return False
    common = _small_file(admin / "commondir")
    return common is not None and Path(os.path.realpath(admin / common.strip())) == common_dir(repo)


def _small_file(path: Path) -> str | None:
    """The text of the regular file ``path`` (followed through symlinks, as git does); ``None``
    if it is missing or anything else -- a FIFO there must never block the caller."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return os.read(fd, 64 * 1024).decode("utf-8", "surrogateescape")
    finally:
        os.close(fd)
