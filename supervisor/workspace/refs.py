"""Refs pagent owns in the plan's repository: reserved branches, pins, and snapshots of the rest.

- **Reservation.** A run's branches (one per task, and the integration branch) are created when
  the run is recorded, all at the run's start commit, in one ``git update-ref --stdin``
  transaction of ``create`` commands: create-only and atomic, so two plans (or runs) on one
  repository, or an agent naming a later task's branch, can never end up sharing one. A name
  that is taken -- an existing branch, or one git cannot create beside an existing one
  (``pagent/h/x/y`` beside ``pagent/h/x``) -- gets the run id appended; a default name
  (``pagent/<plan>/<task>``) may also be flattened (``pagent/h-x-y``). A name the plan gave
  explicitly is never reshaped: if no suffix helps, it stays unreserved and creating its worktree
  fails with git's own words.
- **Pins.** ``refs/pagent/<run>/<task>/<attempt>`` holds the task branch's commit after each
  attempt (``<attempt>-head`` the worktree's HEAD when that differs: detached, another branch,
  the branch deleted), ``.../planted`` a commit found on a reserved branch before its task ever
  ran, ``.../cleaned-<n>`` the HEAD of a worktree ``pagent clean`` removed, and
  ``refs/pagent/<run>/+integration/...`` what the integration branch held when someone else had
  moved it. Nothing ever deletes a pin, so no commit an agent made becomes unreachable.
- **Snapshots** of ``refs/heads`` and ``refs/tags`` before and after an attempt show which
  branches and tags changed meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import GitError
from supervisor.workspace.git import git, run_git

NAMESPACE = "refs/pagent"
INTEGRATION = "+integration"  # in the pins' namespace: '+' is never part of a task id
_WATCHED = ("refs/heads/", "refs/tags/")
_SUFFIXES = 9  # -<run id>, then -<run id>-2 ... -<run id>-9
_TRIES = 3  # the transaction fails only when someone else took a name meanwhile


def pins(run_id: str, task_id: str) -> str:
    """The prefix of a task's pins in one run: ``refs/pagent/<run>/<task>``."""
    return f"{NAMESPACE}/{run_id}/{task_id}"


def integration_pins(run_id: str) -> str:
    """The prefix of the pins a run's integration branch gets."""
    return f"{NAMESPACE}/{run_id}/{INTEGRATION}"


def pin(repo: Path, ref: str, commit: str, why: str) -> None:
    """Point ``ref`` (under ``refs/pagent``) at ``commit``; ``GitError`` if git refuses."""
    git(["update-ref", "-m", f"pagent: {why}", ref, commit], repo)


def pin_all(repo: Path, pins: Sequence[tuple[str, str]], why: str) -> None:
    """Point each ``(ref, commit)`` of ``pins`` at its commit in one transaction."""
    commands = "".join(f"update {ref} {commit}\n" for ref, commit in pins)
    git(["update-ref", "-m", f"pagent: {why}", "--stdin"], repo, stdin=commands)


def snapshot(repo: Path) -> dict[str, str]:
    """Every branch and tag of ``repo`` with the object it points at."""
    out = git(["for-each-ref", "--format=%(objectname) %(refname)", *_WATCHED], repo)
    found: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition(" ")
        if name:
            found[name] = sha
    return found


def local_branches(repo: Path) -> set[str]:
    """The names of every local branch (``main``, ``pagent/nightly/fix-1``)."""
    out = git(["for-each-ref", "--format=%(refname)", "refs/heads/"], repo)
    return {line.removeprefix("refs/heads/") for line in out.splitlines() if line}


@dataclass(frozen=True)
class Wish:
    """A branch name a run would like; ``reshape``: pagent chose it, so it may be flattened."""

    name: str
    reshape: bool = False


def reserve(repo: Path, wishes: Sequence[Wish], commit: str, run_id: str) -> list[str | None]:
    """Create a branch at ``commit`` for each wish, atomically (see the module docstring); the
    names created, in order, ``None`` where no candidate could be. ``GitError`` if git fails."""
    last = ""
    for _ in range(_TRIES):
        taken = _Taken(local_branches(repo))
        chosen: list[str | None] = []
        for wish in wishes:
            name = next((c for c in _candidates(wish, run_id) if taken.free(c)), None)
            if name is not None:
                taken.add(name)
            chosen.append(name)
        commands = "".join(f"create refs/heads/{name} {commit}\n" for name in chosen if name)
        if not commands:
            return chosen
        done = run_git(
            ["update-ref", "-m", f"pagent: reserved by run {run_id}", "--stdin"], repo, stdin=commands
        )
        if done.code == 0:
            return chosen
        last = done.last_line()
    raise GitError(f"git update-ref: cannot reserve the run's branches: {last}")


class _Taken:
    """Branch names in use, and the directories they imply (git stores refs as paths)."""

    def __init__(self, names: set[str]) -> None:
        self._names = set(names)
        self._dirs = {prefix for name in names for prefix in _prefixes(name)}

    def free(self, name: str) -> bool:
        """Whether git could create ``name`` beside every name taken."""
        if name in self._names or name in self._dirs:
            return False
        return not any(prefix in self._names for prefix in _prefixes(name))

    def add(self, name: str) -> None:
        self._names.add(name)
        self._dirs.update(_prefixes(name))


def _prefixes(name: str) -> Iterator[str]:
    """``a/b/c`` -> ``a``, ``a/b``: the directories the ref's path needs."""
    parts = name.split("/")
    for end in range(1, len(parts)):
        yield "/".join(parts[:end])


def _candidates(wish: Wish, run_id: str) -> Iterator[str]:
    """The names to try for ``wish``, in order."""
    bases = [wish.name]
    first, _, rest = wish.name.partition("/")
    if wish.reshape and "/" in rest:
        bases.append(f"{first}/{rest.replace('/', '-')}")
    for base in bases:
        yield base
        yield f"{base}-{run_id}"
        for k in range(2, _SUFFIXES + 1):
            yield f"{base}-{run_id}-{k}"
