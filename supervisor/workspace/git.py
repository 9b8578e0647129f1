"""Running git: the one function every git call of pagent goes through, and the plan's repository.

``git`` promises, for every call:

- **argv, never a shell**, with stdin from ``/dev/null``, no terminal prompt
  (``GIT_TERMINAL_PROMPT=0``, no editor), in the C locale, without the variables that would point
  git at another repository (``GIT_DIR`` and friends, set when pagent runs from a git hook);
- **no code of the repository's runs on pagent's behalf** where git lets us say so: hooks off
  (``core.hooksPath=/dev/null``, a "directory" in which no hook can ever exist -- an agent can
  write ``.git/hooks`` and the shared config, so neither may decide), no fsmonitor daemon, no
  automatic ``gc``/``maintenance`` (they detach and outlive the call). Filter drivers
  (``filter.*``, e.g. git-lfs) and merge drivers stay on: they are part of what a checkout or a
  merge means, so they are bounded like git itself;
- **bounded**: after ``timeout`` seconds (``GIT_TIMEOUT`` by default) git's whole process group
  (its helpers and whatever they started) is killed and ``GitError`` says so;
- **interruptible**: a call made inside ``in_thread`` is killed, group and all, the moment the
  awaiting task is cancelled (SIGTERM of pagent-run), and the thread's further git calls fail at
  once;
- **found after a crash**: git runs in a process group of its own, watched by the guardian
  (``supervisor.guardian``: the group is stopped when the supervisor dies; where the guardian
  cannot run, util-linux ``setpriv --pdeathsig TERM`` asks for the signal) and, inside ``owned_by``, with
  ``PAGENT_COOKIE`` set, so the next run's recovery (the executor's sweep of the plan's cookie
  prefix) stops a git and its children that a SIGKILLed supervisor left behind;
- **bytes-safe**: output is UTF-8 with ``surrogateescape``, so a path that is not UTF-8 survives
  the round trip back into argv; ``shown`` makes such a path printable;
- **confined when asked**: inside ``wrapped_by(wrap)`` git runs as ``wrap(argv, cwd)`` (the
  attempt's sandbox, for pagent's own steps on files an agent wrote), bounded and killed the same.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio

from supervisor.errors import GitError, PagentError, PlanError
from supervisor.guardian import GUARDIAN
from supervisor.plan.model import Plan
from supervisor.workspace.gitproc import Calls, finish, pdeathsig_prefix, read_all, stdin_file

T = TypeVar("T")

GIT_TIMEOUT = 600.0  # seconds per call: far above any sane repository's slowest operation
# The variable the local executor marks an attempt's processes with (launch.proctree.COOKIE_VAR).
COOKIE_VAR = "PAGENT_COOKIE"
SAFETY = (
    "-c", "core.hooksPath=/dev/null",
    "-c", "core.fsmonitor=false",
    "-c", "gc.auto=0",
    "-c", "maintenance.auto=false",
)  # fmt: skip
_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_EDITOR": "true", "GIT_PAGER": "cat"}
_DROPPED = ("GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR")
_DROPPED_PREFIXES = ("GIT_ALTERNATE_", "GIT_NAMESPACE", "GIT_QUARANTINE", "GIT_PREFIX")

_OWNER: ContextVar[str | None] = ContextVar("pagent_git_owner", default=None)


_CALLS: ContextVar[Calls | None] = ContextVar("pagent_git_calls", default=None)

# Turns git's argv (and its working directory) into the argv that runs it confined.
Wrap = Callable[[Sequence[str], Path], Sequence[str]]
_WRAP: ContextVar[Wrap | None] = ContextVar("pagent_git_wrap", default=None)


@contextlib.contextmanager
def wrapped_by(wrap: Wrap | None) -> Iterator[None]:
    """Inside this block (in this thread), git runs as ``wrap(argv, cwd)``; ``None``: as it is."""
    token = _WRAP.set(wrap)
    try:
        yield
    finally:
        _WRAP.reset(token)


@contextlib.contextmanager
def owned_by(cookie: str) -> Iterator[None]:
    """Inside this block (and the tasks and worker threads it starts), git runs with
    ``PAGENT_COOKIE=cookie`` -- ``<plan uid>:git:<run id>`` -- so recovery finds it."""
    token = _OWNER.set(cookie)
    try:
        yield
    finally:
        _OWNER.reset(token)


async def in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread; cancelling the await returns at once and kills every
    git call it has running (see the module docstring)."""
    calls = Calls()

    def work() -> T:
        token = _CALLS.set(calls)
        try:
            return fn(*args)
        finally:
            _CALLS.reset(token)

    try:
        return await anyio.to_thread.run_sync(work, abandon_on_cancel=True)
    except anyio.get_cancelled_exc_class():
        calls.cancel()
        raise


@dataclass(frozen=True)
class Done:
    """How one git call ended: its exit code and its output (stdout round-trips as argv)."""

    code: int
    stdout: str
    stderr: str

    def last_line(self) -> str:
        """Git's last words, for a message."""
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return lines[-1] if lines else f"exit {self.code}"


def run_git(
    args: Iterable[str], cwd: Path, *, timeout: float = GIT_TIMEOUT, stdin: str | None = None
) -> Done:
    """Run ``git args`` in ``cwd`` to its end, whatever its exit code; ``GitError`` only when it
    could not run: ``cwd`` missing, git not installed, the time bound, a cancelled call.
    ``stdin`` is given as a file (``/dev/null`` without it)."""
    args = list(args)
    what = f"git {' '.join(args[:2])}"
    calls = _CALLS.get()
    if calls is not None and calls.cancelled:
        raise GitError(f"{what}: stopped")
    if not Path(cwd).is_dir():
        raise GitError(f"{what}: no such directory: {cwd}")
    program = shutil.which("git")
    if program is None:
        raise GitError("git is not installed (not found on PATH)")
    command: Sequence[str] = [program, *SAFETY, *args]
    if (wrap := _WRAP.get()) is not None:
        try:
            command = wrap(command, Path(cwd))
        except (PagentError, OSError) as exc:
            raise GitError(f"{what}: cannot confine git: {exc}") from None
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, stdin_file(stdin) as given:
        guarded = GUARDIAN.start()  # running (started once per process); else git asks for its own signal
        try:
            proc = subprocess.Popen(
                command if guarded else [*pdeathsig_prefix(), *command],
                cwd=cwd,
                env=_environment(),
                stdin=given,
                stdout=out,
                stderr=err,
                start_new_session=True,  # its own group: a timeout or a cancel kills its helpers too
            )
        except OSError as exc:
            raise GitError(f"{what}: cannot run git: {exc.strerror or exc}") from None
        if guarded:
            GUARDIAN.watch(proc.pid)
        try:
            code, timed_out = finish(proc, calls, timeout)
        finally:
            if guarded:
                GUARDIAN.forget(proc.pid)
        if calls is not None and calls.cancelled:
            raise GitError(f"{what}: stopped")
        if timed_out:
            raise GitError(f"{what}: no answer within {timeout:g} s (stopped)")
        return Done(
            code, read_all(out).decode("utf-8", "surrogateescape"), read_all(err).decode("utf-8", "replace")
        )


def git(
    args: Iterable[str],
    cwd: Path,
    check: bool = True,
    *,
    timeout: float = GIT_TIMEOUT,
    stdin: str | None = None,
) -> str:
    """Run ``git args`` in ``cwd`` and return its stdout; ``GitError`` with git's last stderr
    line if it fails (and as ``run_git``). ``check=False`` returns a failed call's stdout too."""
    args = list(args)
    done = run_git(args, cwd, timeout=timeout, stdin=stdin)
    if check and done.code != 0:
        raise GitError(f"git {' '.join(args[:2])}: {done.last_line()}")
    return done.stdout


def shown(path: str) -> str:
    """``path`` as git output gave it, made printable: bytes that are not UTF-8 become ``\\xff``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def commit_of(cwd: Path, ref: str) -> str | None:
    """The commit ``ref`` names (seen from ``cwd``), or ``None``."""
    args = ["rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"]
    return git(args, cwd, check=False).strip() or None


def is_ancestor(cwd: Path, old: str, new: str) -> bool:
    """Whether commit ``old`` is ``new`` or one of its ancestors; ``GitError`` if either is unknown."""
    done = run_git(["merge-base", "--is-ancestor", old, new], cwd)
    if done.code not in (0, 1):
        raise GitError(f"git merge-base: {done.last_line()}")
    return done.code == 0


def _environment() -> dict[str, str]:
    """The environment of pagent's git: the user's, minus repository redirections, plus ours."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _DROPPED and not key.startswith(_DROPPED_PREFIXES)
    }
    env.update(_ENV)
    if (owner := _OWNER.get()) is not None:
        env[COOKIE_VAR] = owner
    return env


@dataclass(frozen=True)
class RepoInfo:
    """The repository a plan works on and the commit its worktrees start from."""

    root: Path
    base_ref: str
    base_commit: str


def resolve_repo(plan: Plan) -> RepoInfo:
    """Find the plan's repository and base commit; ``PlanError`` (exit 2) if either is wrong."""
    start = plan.repo if plan.repo is not None else plan.plan_dir
    if not start.is_dir():
        raise PlanError(f"{plan.path.name}: repo: no such directory: {start}")
    try:
        root = Path(git(["rev-parse", "--show-toplevel"], start).strip())
    except GitError as exc:
        if "not installed" in str(exc):
            raise
        raise PlanError(f"{plan.path.name}: repo: not inside a git repository: {start}") from None
    base_ref = plan.base or "HEAD"
    commit = commit_of(root, base_ref)
    if commit is None:
        what = "the repository has no commit yet" if plan.base is None else "no such commit"
        raise PlanError(f"{plan.path.name}: base: {base_ref!r}: {what}")
    return RepoInfo(root=root, base_ref=base_ref, base_commit=commit)


def remote_problem(repo: Path, remote: str) -> str | None:
    """Why ``remote`` cannot be pushed to from ``repo`` ("no remote 'origin' in /repo"), or ``None``.

    Reads the repository's configuration only: nothing is contacted. A URL or a path is taken
    as it is (git pushes to those directly).
    """
    if "/" in remote or ":" in remote:
        return None
    try:
        git(["remote", "get-url", "--push", remote], repo)
    except GitError as exc:
        if "not installed" in str(exc):
            return str(exc)
        return f"no remote {remote!r} in {repo}"
    return None


def branch_of(repo: Path, ref: str | None) -> str | None:
    """The local branch ``ref`` names (``None``: the branch checked out in ``repo``); ``None``
    when it names no branch (a commit, a tag, a detached HEAD)."""
    if ref is None or ref == "HEAD":
        name = git(["symbolic-ref", "--quiet", "--short", "HEAD"], repo, check=False).strip()
        return name or None
    found = git(["rev-parse", "--verify", "--quiet", f"refs/heads/{ref}"], repo, check=False).strip()
    return ref if found else None
