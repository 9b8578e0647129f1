"""Git on a node: the cached clone workspace, the auto-commit, the push back.

Nodes share no disk with the supervisor; git is the data plane. A task's workspace is a
clone kept between attempts under the node cache (``<cache>/<plan uid>/<task>/repo``), so a
retry fetches only what is new. Every call here has a timeout, runs without a terminal prompt
(``GIT_TERMINAL_PROMPT=0``, ssh in batch mode) and with hooks disabled: a pre-commit or
pre-push hook of the repository, or a pinentry prompt for signing, must not hang or veto the
node program's own commits and pushes. The remote is always given by URL, never by a
configured remote name, so an agent that edits ``.git/config`` cannot redirect the push.

Standard library only: this module runs on the nodes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

LOCAL_TIMEOUT = 60.0
FALLBACK_NAME = "pagent"  # the same identity the local executor falls back to
FALLBACK_EMAIL = "pagent@localhost"
_OWN_CONFIG = ("-c", "core.hooksPath=/dev/null", "-c", "commit.gpgSign=false", "-c", "gc.auto=0")


class NodeGitError(Exception):
    """A git call failed or timed out; the message is one line naming the call."""


def git_env() -> dict[str, str]:
    """The node's environment for git: no prompts, C locale, ssh never asking."""
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


def run(args: Sequence[str], cwd: Path, timeout: float = LOCAL_TIMEOUT) -> tuple[int, str, str]:
    """``git args`` in ``cwd`` with hooks disabled: exit code, stdout, stderr. A timeout kills
    git's whole process group (ssh, remote helpers) and raises ``NodeGitError``."""
    argv = ["git", *_OWN_CONFIG, *args]
    try:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=git_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="replace",
            start_new_session=True,
        )
    except FileNotFoundError:
        raise NodeGitError("git is not installed on this node (not found on PATH)") from None
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise NodeGitError(f"git {args[0]}: timed out after {timeout:g} s") from None
    return proc.returncode, out, err


def _last_line(code: int, out: str, err: str) -> str:
    lines = (err.strip() or out.strip()).splitlines()
    return lines[-1] if lines else f"exit {code}"


def git(args: Sequence[str], cwd: Path, timeout: float = LOCAL_TIMEOUT, check: bool = True) -> str:
    """``run`` that returns stdout, raising ``NodeGitError`` (git's last line) on failure."""
    code, out, err = run(args, cwd, timeout)
    if check and code != 0:
        raise NodeGitError(f"git {args[0]}: {_last_line(code, out, err)}")
    return out


def _identity(repo: Path) -> list[str]:
    config = []
    if not git(["config", "user.name"], repo, check=False).strip() and "GIT_AUTHOR_NAME" not in os.environ:
        config += ["-c", f"user.name={FALLBACK_NAME}"]
    if not git(["config", "user.email"], repo, check=False).strip() and "GIT_AUTHOR_EMAIL" not in os.environ:
        config += ["-c", f"user.email={FALLBACK_EMAIL}"]
    return config


@dataclass(frozen=True)
class Checkout:
    """What the workspace was set to before the attempt."""

    tip: str  # the commit the branch stood at (on the remote, or the start commit if new)
    continued: bool  # the remote already had the branch: this attempt continues it
    remote_tip: str | None  # the branch's commit on the remote when fetched (None: new branch)


def remote_tip(repo: Path, remote: str, branch: str, timeout: float) -> str | None:
    """The commit ``branch`` points to on ``remote``, or ``None`` if it has no such branch."""
    out = git(["ls-remote", "--", remote, f"refs/heads/{branch}"], repo, timeout)
    for line in out.splitlines():
        sha, _, ref = line.partition("\t")
        if ref == f"refs/heads/{branch}":
            return sha
    return None


def prepare(
    repo: Path,
    remote: str,
    *,
    branch: str,
    start_commit: str,
    start_ref: str | None,
    timeout: float,
    expect_remote: str | None = None,
) -> Checkout:
    """Fetch into ``repo`` (made on first use) and check out ``branch``: the remote's branch if
    it exists (a retry continues there), else a new branch at ``start_commit``. With
    ``expect_remote`` the remote's branch must be exactly there (``NodeGitError`` otherwise).

    Leftovers of an earlier attempt are dropped (tracked changes reset, untracked files
    removed), but git-ignored files stay: they are the caches (dependencies, build output) that
    make a cached workspace worth keeping, and an auto-commit never takes them anyway.
    """
    _init(repo)
    tip = remote_tip(repo, remote, branch, timeout)
    if expect_remote is not None and tip != expect_remote:
        where = f"at {tip[:12]}" if tip else "missing"
        raise NodeGitError(
            f"the remote's branch {branch} is {where}, not at {expect_remote[:12]} where pagent put it"
        )
    if tip is not None:
        git(["fetch", "--quiet", "--no-tags", "--", remote, f"refs/heads/{branch}"], repo, timeout)
        target = tip
    else:
        wanted = start_ref or start_commit
        if git(["cat-file", "-t", f"{start_commit}^{{commit}}"], repo, check=False).strip() != "commit":
            git(["fetch", "--quiet", "--no-tags", "--", remote, wanted], repo, timeout)
        target = start_commit
    if git(["cat-file", "-t", f"{target}^{{commit}}"], repo, check=False).strip() != "commit":
        raise NodeGitError(f"git fetch: {target} is not a commit the remote gave (start_ref missing?)")
    _checkout(repo, branch, target)
    return Checkout(tip=target, continued=tip is not None, remote_tip=tip)


def _init(repo: Path) -> None:
    """Make ``repo`` a repository if it is none yet."""
    if not (repo / ".git").is_dir():
        repo.mkdir(parents=True, exist_ok=True)
        git(["init", "--quiet", str(repo)], repo.parent)


def _checkout(repo: Path, branch: str, target: str) -> None:
    """``branch`` at ``target``, checked out, with what an earlier attempt left dropped (ignored
    files stay)."""
    for abort in (["merge", "--abort"], ["rebase", "--abort"], ["cherry-pick", "--abort"]):
        git(abort, repo, check=False)  # an earlier attempt may have been stopped in the middle
    git(["checkout", "--quiet", "--force", "-B", branch, target], repo)
    git(["reset", "--quiet", "--hard", target], repo)
    git(["clean", "--quiet", "-d", "--force", "--force"], repo)


def at_commit(repo: Path, remote: str, *, branch: str, commit: str, ref: str, timeout: float) -> bool:
    """For ``verify``: the workspace at ``commit``, as the attempt that made it left it (its
    ignored files, say installed dependencies, included) when it is already there; else fetched
    (``ref`` from the remote) and checked out on ``branch``. True if it was already there."""
    _init(repo)
    if head(repo) == commit and not git(["status", "--porcelain", "--untracked-files=no"], repo).strip():
        return True
    if git(["cat-file", "-t", f"{commit}^{{commit}}"], repo, check=False).strip() != "commit":
        git(["fetch", "--quiet", "--no-tags", "--", remote, ref], repo, timeout)
    if git(["cat-file", "-t", f"{commit}^{{commit}}"], repo, check=False).strip() != "commit":
        raise NodeGitError(f"git fetch: {commit} is not a commit the remote gave ({ref})")
    _checkout(repo, branch, commit)
    return False


def dirty(repo: Path, exclude: Sequence[str]) -> bool:
    """Whether the work tree holds changes or untracked files (not ``exclude``, not ignored)."""
    pathspec = [f":(top,exclude,literal){p}" for p in exclude]
    out = git(["status", "--porcelain", "-z", "--untracked-files=normal", "--", ".", *pathspec], repo)
    return bool(out.strip("\0"))


def pin_locally(repo: Path, pins: Sequence[tuple[str, str]]) -> None:
    """The attempt's pins in the node's own clone too: a commit the push could not deliver stays
    reachable in the node cache (``git for-each-ref refs/pagent`` there finds it)."""
    for ref, commit in pins:
        git(["update-ref", "-m", "pagent: pinned on the node", ref, commit], repo, check=False)


def head(repo: Path) -> str | None:
    """The commit HEAD points to, or ``None`` (no commit, or not a repository any more)."""
    out = git(["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], repo, check=False).strip()
    return out or None


def branch_commit(repo: Path, branch: str) -> str | None:
    """The commit the local ``branch`` points to, or ``None`` if the agent deleted it."""
    ref = f"refs/heads/{branch}^{{commit}}"
    return git(["rev-parse", "--verify", "--quiet", ref], repo, check=False).strip() or None


def auto_commit(repo: Path, message: str, exclude: Sequence[str]) -> bool:
    """Commit everything left uncommitted (staged, unstaged, untracked; not ``exclude``) on
    HEAD, without hooks or signing; True if a commit was made."""
    pathspec = [f":(top,exclude,literal){p}" for p in exclude]
    git(["add", "--all", "--", ".", *pathspec], repo)
    if exclude:
        git(["--literal-pathspecs", "reset", "--quiet", "--", *exclude], repo, check=False)
    if not git(["diff", "--cached", "--name-only", "-z"], repo):
        return False
    git([*_identity(repo), "commit", "--quiet", "--no-verify", "--no-gpg-sign", "-m", message], repo)
    return True


def is_ancestor(repo: Path, older: str, newer: str) -> bool:
    """Whether ``older`` is ``newer`` or one of its ancestors."""
    return run(["merge-base", "--is-ancestor", older, newer], repo)[0] == 0


@dataclass(frozen=True)
class PushResult:
    """What arrived on the remote."""

    branch: bool
    pin: bool
    forced: bool
    error: str | None


def pins_for(pin_ref: str, branch_commit: str | None, head_commit: str | None) -> list[tuple[str, str]]:
    """The attempt's pins, as the executor seam defines them: the branch's commit at ``pin_ref``
    (HEAD's when the agent deleted the branch), a differing HEAD at ``pin_ref-head``."""
    main = branch_commit or head_commit
    pins = [(pin_ref, main)] if main is not None else []
    if head_commit is not None and head_commit != main:
        pins.append((f"{pin_ref}-head", head_commit))
    return pins


def push(
    repo: Path,
    remote: str,
    *,
    branch: str,
    branch_commit: str | None,
    pin_ref: str,
    pin_commit: str | None,
    expected: str | None,
    force: bool,
    timeout: float,
) -> PushResult:
    """Push the branch and the attempt's pins (``pins_for``; ``pin_commit`` is HEAD's commit)
    in one call, not atomically: a rejected branch must not keep the pins from landing, since
    they are what keeps the work reachable.

    Without ``force`` the branch moves only forward. With it (the branch is pagent's own), a
    rewritten branch replaces the remote one only if the remote still is at ``expected``
    (``--force-with-lease``): nobody else's push is ever overwritten, and the commits replaced
    stay reachable through the previous attempt's pinned ref.
    """
    refspecs = []
    if branch_commit is not None:
        refspecs.append(f"{branch_commit}:refs/heads/{branch}")
    pins = pins_for(pin_ref, branch_commit, pin_commit)
    pin_locally(repo, pins)
    refspecs += [f"{commit}:{ref}" for ref, commit in pins]
    if not refspecs:
        return PushResult(False, False, False, "nothing to push: no commit")
    lease = [f"--force-with-lease=refs/heads/{branch}:{expected or ''}"] if force else []
    argv = ["push", "--porcelain", "--no-verify", *lease, "--", remote, *refspecs]
    code, out, err = run(argv, repo, timeout)
    done: dict[str, str] = {}
    for line in out.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and len(parts[0]) == 1:
            done[parts[1].split(":", 1)[-1]] = parts[0]
    ok_flags = (" ", "+", "*", "=")
    branch_ok = done.get(f"refs/heads/{branch}", "!") in ok_flags if branch_commit else False
    pin_ok = bool(pins) and all(done.get(ref, "!") in ok_flags for ref, _ in pins)
    error = None
    if not (branch_ok or branch_commit is None) or not (pin_ok or not pins):
        rejected = [line.split("\t")[-1] for line in out.splitlines() if line.startswith("!")]
        error = "git push: " + ("; ".join(rejected) if rejected else _last_line(code, out, err))
    forced = done.get(f"refs/heads/{branch}") == "+"
    return PushResult(branch_ok, pin_ok, forced, error)


def fetch_blob(remote: str, ref: str, sha: str, timeout: float) -> bytes:
    """The blob ``sha`` that ``ref`` names on ``remote`` (a spec too large for a command line),
    fetched into a repository of its own that is removed afterwards."""
    with tempfile.TemporaryDirectory(prefix="pagent-spec-") as scratch:
        where = Path(scratch)
        git(["init", "--quiet", "--bare", str(where)], where)
        git(["fetch", "--quiet", "--no-tags", "--", remote, ref], where, timeout)
        code, out, err = run(["cat-file", "blob", sha], where)
        if code != 0:
            raise NodeGitError(f"git cat-file: {_last_line(code, out, err)}")
        return out.encode()
