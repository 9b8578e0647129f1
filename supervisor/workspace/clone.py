"""A clone workspace: a task's own git repository, whose commits pagent fetches into the main one.

A git worktree writes its objects and refs into the main repository, so a task that must not
write there (a sandboxed or a remote attempt) works in a clone. The pieces, each synchronous and
running git through ``supervisor.workspace.git`` (bounded, interruptible, hooks off):

- ``make_clone``: ``git clone --shared`` of the main repository on the task branch, which must
  exist there; ``sync``: an existing clone is checked and put on the branch's commit in the main
  repository, keeping commits of its own that descend from it (an attempt whose fetch never
  happened) and moving only when that orphans nothing and drops no uncommitted work.
- ``fetch_pins``: the clone's branch tip (and a differing HEAD) fetched into the main repository
  as the attempt's pins; ``integrate``: the task branch set to a pinned commit when it descends
  from the task's start (compare-and-swap: a branch someone moved meanwhile is left alone).
- ``uncommitted_paths``, ``unfetched_commits`` and ``remove_clone`` for ``pagent clean``.

``--shared`` rather than a plain local clone: a local clone hardlinks the main repository's
object files, and a writable hardlink is a write into the main repository. ``--shared`` borrows
objects through ``objects/info/alternates``; the clone adds only its own objects and cannot
change the borrowed ones when the main repository is mounted read-only. The price: ``git gc
--prune=now`` in the main repository deletes unreachable objects a clone may still borrow.
Everything a clone borrows is reachable from the task branch in the main repository, and every
attempt's commits are copied back, so only deleting the task branch *and* pruning could break it.

After an attempt the clone is the agent's: its ``.git/config`` could name a command (an
fsmonitor, a filter driver) and its ``.git`` could hold symlinks into the main repository, both
run or followed by pagent's own git outside the sandbox. So every entry point first checks the
clone (``CloneError`` on a symlink in ``.git``, a ``.git`` that is not a directory, a
``commondir``) and rewrites ``.git/config`` and ``objects/info/alternates`` to pagent's own.
"""

from __future__ import annotations

import functools
import os
import shutil
from pathlib import Path

from supervisor.errors import GitError
from supervisor.workspace.git import commit_of, git, is_ancestor
from supervisor.workspace.gitdir import common_dir

_FETCH = ("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules")


class CloneError(GitError):
    """A clone workspace cannot be used as it is (tampered with, unsafe to move or remove)."""


def _quote(value: str) -> str:
    if "\n" in value:
        raise CloneError(f"clone: a newline in {value!r}")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@functools.lru_cache(maxsize=64)
def _core(main: Path) -> tuple[str, ...]:
    """The ``[core]`` and ``[extensions]`` lines a clone of ``main`` needs, from ``main``'s own
    configuration (asked once per repository: they do not change during a run)."""
    sha256 = git(["rev-parse", "--show-object-format"], main).strip() == "sha256"
    lines = ["[core]", f"\trepositoryformatversion = {1 if sha256 else 0}", "\tbare = false"]
    lines.append("\tlogallrefupdates = true")
    for key in ("core.filemode", "core.symlinks", "core.ignorecase"):
        value = git(["config", "--local", "--bool", key], main, check=False).strip()
        if value:
            lines.append(f"\t{key.split('.')[1]} = {value}")
    if sha256:
        lines += ["[extensions]", "\tobjectformat = sha256"]
    return tuple(lines)


def _trusted_config(main: Path, branch: str) -> str:
    """The clone's whole ``.git/config``, from the main repository's facts only."""
    lines = list(_core(main))
    lines += [
        '[remote "origin"]',
        f"\turl = {_quote(str(main))}",
        "\tfetch = +refs/heads/*:refs/remotes/origin/*",
        f"[branch {_quote(branch)}]",
        "\tremote = origin",
        f"\tmerge = {_quote('refs/heads/' + branch)}",
    ]
    return "\n".join(lines) + "\n"


def _replace(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".pagent-tmp")
    tmp.unlink(missing_ok=True)
    tmp.write_text(text)
    tmp.replace(path)  # replaces a symlink itself, never writes through it


def check_clone(main: Path, path: Path, branch: str) -> None:
    """Make the clone at ``path`` safe for pagent's own git calls, or raise ``CloneError``
    (see the module docstring)."""
    gitdir = path / ".git"
    if gitdir.is_symlink() or not gitdir.is_dir():
        raise CloneError(f"clone {path}: .git is not a directory (tampered with)")
    if (gitdir / "commondir").exists() or (gitdir / "commondir").is_symlink():
        raise CloneError(f"clone {path}: .git/commondir exists (tampered with)")
    for top, dirs, files in os.walk(gitdir):
        for name in (*dirs, *files):
            if (entry := Path(top, name)).is_symlink():
                raise CloneError(f"clone {path}: symlink {entry.relative_to(path)} (tampered with)")
    _replace(gitdir / "config", _trusted_config(main, branch))
    (gitdir / "objects" / "info").mkdir(parents=True, exist_ok=True)
    _replace(gitdir / "objects" / "info" / "alternates", str(common_dir(main) / "objects") + "\n")


def make_clone(main: Path, path: Path, branch: str) -> None:
    """Clone ``main`` at ``path`` (which must not exist) on ``branch``, which must exist there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    clone = ["clone", "--quiet", "--shared", "--no-tags", "--branch", branch, "--", str(main), str(path)]
    git(clone, main)
    check_clone(main, path, branch)


def _only_in_clone(path: Path, branch: str, keep: str | None) -> int:
    """Commits on the clone's branch or HEAD that neither a ref of the main repository (its
    objects are the clone's alternate) nor ``keep`` reaches: what moving the clone would orphan."""
    tips = [ref for ref in (f"refs/heads/{branch}", "HEAD") if commit_of(path, ref)]
    if not tips:
        return 0
    args = ["rev-list", "--count", *tips, "--not", "--alternate-refs", *([keep] if keep else [])]
    return int(git(args, path).strip())


def sync(main: Path, path: Path, branch: str) -> str:
    """Put the (checked) clone on ``branch`` at the main repository's commit of it, keeping
    commits of its own that descend from that commit; the commit it is at. ``CloneError`` when
    moving would drop uncommitted work or orphan a commit, ``GitError`` if the branch is gone."""
    check_clone(main, path, branch)
    tip = commit_of(main, f"refs/heads/{branch}")
    if tip is None:
        raise GitError(f"branch {branch} is gone from {main}")
    mine = commit_of(path, f"refs/heads/{branch}")
    target = mine if mine is not None and is_ancestor(path, tip, mine) else tip
    on = git(["symbolic-ref", "--quiet", "HEAD"], path, check=False).strip()
    if on == f"refs/heads/{branch}" and commit_of(path, "HEAD") == target:
        return target
    if uncommitted_paths(main, path, branch):
        raise CloneError(f"clone {path}: uncommitted work where the branch {branch!r} must move")
    if orphans := _only_in_clone(path, branch, target):
        raise CloneError(f"clone {path}: {orphans} commit(s) the main repository lacks")
    git(["checkout", "--quiet", "--force", "-B", branch, target, "--"], path)
    return target


def fetch_pins(
    main: Path, path: Path, branch: str, pin: str
) -> tuple[str | None, str | None, tuple[str, ...]]:
    """Fetch the clone's ``branch`` tip into ``main`` at ``pin`` (its HEAD there when the branch is
    gone) and a HEAD holding commits the branch lacks at ``pin-head``: the clone's tip, its HEAD
    and the refs written. Nothing else in ``main`` changes."""
    mine = commit_of(path, f"refs/heads/{branch}")
    head = commit_of(path, "HEAD")
    specs: list[tuple[str, str]] = []
    if mine is not None:
        specs.append((f"refs/heads/{branch}", pin))
        if head is not None and head != mine and not is_ancestor(path, head, mine):
            specs.append(("HEAD", f"{pin}-head"))
    elif head is not None:
        specs.append(("HEAD", pin))
    if specs:
        git([*_FETCH, "--", str(path), *(f"+{src}:{dst}" for src, dst in specs)], main)
    return mine, head, tuple(dst for _, dst in specs)


def integrate(main: Path, branch: str, commit: str, start: str) -> bool:
    """Set ``branch`` in ``main`` to ``commit`` (already there: a pin) when it descends from
    ``start``, only from the value read now (a branch moved meanwhile: ``GitError``); False if it
    does not descend (the branch stays), True otherwise."""
    ref = f"refs/heads/{branch}"
    old = commit_of(main, ref)
    if old is None:
        raise GitError(f"branch {branch} is gone from {main}")
    if old == commit:
        return True
    if not is_ancestor(main, start, commit):
        return False
    git(["update-ref", "-m", "pagent: the attempt's work, fetched from its clone", ref, commit, old], main)
    return True


def uncommitted_paths(main: Path, path: Path, branch: str, *, every_file: bool = False) -> tuple[str, ...]:
    """Paths with uncommitted changes or untracked (not ignored) files in the clone's work tree
    (``every_file``: each untracked file, not its directory)."""
    check_clone(main, path, branch)
    untracked = "--untracked-files=all" if every_file else "--untracked-files=normal"
    status = ["status", "--porcelain=v1", "-z", "--no-renames", untracked]
    out = git([*status, "--ignore-submodules=dirty"], path)
    return tuple(entry[3:] for entry in out.split("\0") if entry)


def unfetched_commits(main: Path, path: Path, branch: str) -> int:
    """How many commits of the clone's branch and HEAD no ref of the main repository reaches."""
    check_clone(main, path, branch)
    return _only_in_clone(path, branch, None)


def remove_clone(main: Path, path: Path, branch: str, *, force: bool = False) -> None:
    """Delete the clone; ``CloneError`` (removing nothing) if it holds uncommitted or unfetched
    work, unless ``force``. The main repository's branches and pins stay."""
    if not path.exists():
        return
    if not force:
        dirty = uncommitted_paths(main, path, branch)
        ahead = unfetched_commits(main, path, branch)
        if dirty or ahead:
            what = [f"uncommitted changes: {', '.join(dirty[:10])}"] if dirty else []
            what += [f"{ahead} commit(s) not in the main repository"] if ahead else []
            raise CloneError(f"{path}: {' and '.join(what)}")
    shutil.rmtree(path)


def is_clone_of(main: Path, path: Path) -> bool:
    """Whether ``path`` looks like a clone pagent made of ``main``: a ``.git`` directory whose
    alternates borrow ``main``'s objects (read, not trusted: ``check_clone`` decides)."""
    alternates = path / ".git" / "objects" / "info" / "alternates"
    try:
        if (path / ".git").is_symlink() or alternates.is_symlink():
            return False
        text = alternates.read_text(errors="replace")
    except OSError:
        return False
    wanted = os.path.realpath(common_dir(main) / "objects")
    return any(os.path.realpath(line.strip()) == wanted for line in text.splitlines() if line.strip())
