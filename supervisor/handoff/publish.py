"""Pushing a branch to the plan's remote: bounded, without prompts or hooks, never forced.

``push_branch`` asks the remote for the branch first (``git ls-remote``) and pushes only when the
remote does not already have the local commit. The push itself is a plain fast-forward push of
exactly one ref (``refs/heads/B:refs/heads/B``): no ``--force`` of any kind, no tags, no
submodules, no signing. pagent never rewrites a branch it pushed (retries and auto-commits add
commits on top, integration merges add merge commits), so a fast-forward is all it needs; a
remote branch that moved is someone else's work and is left alone.

What it guards against, and how:

- prompts: ``GIT_TERMINAL_PROMPT=0``, stdin from /dev/null and a new session without a
  controlling terminal (ssh and credential helpers cannot ask);
- hooks: ``--no-verify`` (pre-push) and ``-c core.hooksPath=<empty dir>`` (every other
  client-side hook, e.g. reference-transaction). The remote's own hooks (pre-receive...) run on
  the remote as always; a hung one is bounded like everything else;
- hanging: ``timeout`` per git command, after which its whole process group is killed.

A rejection or an error is a ``PushResult``, never an exception: publishing must never turn a
succeeded task into a failed one.
"""

from __future__ import annotations

import enum
import os
import re
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from supervisor.workspace.bounded import Finished, run_bounded

GIT_ENV = {"GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
# One ref, as it is: no force of any kind, no tags, no submodules, no signing prompt.
PUSH_OPTIONS = ("--porcelain", "--no-verify", "--no-follow-tags", "--no-signed", "--recurse-submodules=no")
_CREDENTIALS = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")
# git says "fetch first" when it lacks the remote's new commit locally and "non-fast-forward"
# when it has it; both mean the remote branch has commits this branch does not.
_SAME_AS = {"fetch first": "non-fast-forward"}


class PushStatus(enum.StrEnum):
    """How a push ended."""

    PUSHED = "pushed"
    UP_TO_DATE = "up-to-date"  # the remote already had this commit: nothing was sent
    REJECTED = "rejected"  # the remote refused (it moved, a hook declined, protected branch)
    ERROR = "error"  # could not ask or push (no such remote, unreachable, timed out)


@dataclass(frozen=True)
class PushResult:
    """One branch pushed (or not) to one remote; ``detail`` is one line, e.g. "rejected
    (non-fast-forward)" or git's last error line, with credentials masked."""

    remote: str
    branch: str
    status: PushStatus
    sha: str | None = None  # the local commit pushed (or that would have been)
    remote_sha: str | None = None  # what the remote had before; None: no such branch there
    detail: str | None = None
    at: float = 0.0

    @property
    def ok(self) -> bool:
        """Whether the remote now has the local commit."""
        return self.status in {PushStatus.PUSHED, PushStatus.UP_TO_DATE}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``publish.pushed`` in a task's status view."""
        return {
            "remote": self.remote,
            "branch": self.branch,
            "status": self.status.value,
            "ok": self.ok,
            "sha": self.sha,
            "remote_sha": self.remote_sha,
            "detail": self.detail,
            "at": round(self.at, 3),
        }


def push_branch(repo: Path, remote: str, branch: str, *, timeout: float = 120.0) -> PushResult:
    """Make ``remote`` have local branch ``branch`` of ``repo`` by a fast-forward push, unless it
    already has that commit. Each git command is bounded by ``timeout`` seconds. Never raises."""
    return replace(_push(repo, remote, branch, timeout), at=time.time())


def mask_credentials(text: str) -> str:
    """``text`` with the user and password of every URL in it replaced by ``***``."""
    return _CREDENTIALS.sub(r"\1***@", text)


def _push(repo: Path, remote: str, branch: str, timeout: float) -> PushResult:
    """``push_branch`` without the timestamp."""
    ref = f"refs/heads/{branch}"
    local = _git(repo, ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], timeout)
    if not local.ok:
        return PushResult(remote, branch, PushStatus.ERROR, detail=f"no local branch {branch!r}")
    sha = local.stdout.strip()
    listed = _git(repo, ["ls-remote", "--heads", "--", remote, ref], timeout)
    if not listed.ok:
        detail = _problem(listed, "git ls-remote", timeout)
        return PushResult(remote, branch, PushStatus.ERROR, sha, detail=detail)
    before = PushResult(remote, branch, PushStatus.UP_TO_DATE, sha, _listed_sha(listed.stdout, ref))
    return before if before.remote_sha == sha else _send(repo, before, timeout)


def _send(repo: Path, before: PushResult, timeout: float) -> PushResult:
    """The push itself (of ``before.branch``, which the remote has at ``before.remote_sha``),
    and what its porcelain output says."""
    ref = f"refs/heads/{before.branch}"
    with tempfile.TemporaryDirectory(prefix="pagent-nohooks-") as no_hooks:
        args = ["-c", f"core.hooksPath={no_hooks}", "push", *PUSH_OPTIONS, before.remote, f"{ref}:{ref}"]
        pushed = _git(repo, args, timeout)
    flag, summary = _porcelain(pushed.stdout, ref)
    if flag == "!":
        return replace(before, status=PushStatus.REJECTED, detail=_rejection(summary))
    if pushed.ok and flag in {" ", "*"}:
        return replace(before, status=PushStatus.PUSHED)
    if pushed.ok and flag == "=":  # someone pushed the same commit between our two questions
        return before
    return replace(before, status=PushStatus.ERROR, detail=_problem(pushed, "git push", timeout))


def _git(repo: Path, args: list[str], timeout: float) -> Finished:
    """``git args`` in ``repo``, bounded, without prompts."""
    return run_bounded(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, timeout=timeout)


def _listed_sha(output: str, ref: str) -> str | None:
    """The sha ``git ls-remote`` printed for exactly ``ref`` (it matches by suffix otherwise)."""
    for line in output.splitlines():
        sha, _, name = line.partition("\t")
        if name.strip() == ref:
            return sha.strip()
    return None


def _porcelain(output: str, ref: str) -> tuple[str | None, str]:
    """The flag and summary of ``ref``'s line in ``git push --porcelain`` output."""
    for line in output.splitlines():
        parts = line.split("\t")
        if len(parts) >= 3 and parts[1].startswith(f"{ref}:") and len(parts[0]) == 1:
            return parts[0], parts[2].strip()
    return None, ""


def _rejection(summary: str) -> str:
    """'[rejected] (fetch first)' -> 'rejected (non-fast-forward)'; '[remote rejected] (pre-receive
    hook declined)' -> 'remote rejected (pre-receive hook declined)'."""
    match = re.match(r"^\[(?P<what>[^\]]+)\]\s*(?:\((?P<why>.*)\))?$", summary)
    if match is None:
        return mask_credentials(f"rejected ({summary})" if summary else "rejected")
    why = match["why"] or ""
    why = _SAME_AS.get(why, why)
    return mask_credentials(f"{match['what']} ({why})" if why else match["what"])


def _problem(done: Finished, what: str, timeout: float) -> str:
    """One masked line for a git command that failed or timed out."""
    if done.error is not None:
        return done.error
    if done.timed_out:
        return f"{what}: no answer within {timeout:g} s (stopped)"
    lines = [line for line in (done.stderr + "\n" + done.stdout).splitlines() if line.strip()]
    # git's first fatal/error line names the cause ("'x' does not appear to be a git
    # repository"); the ones after it are generic ("Could not read from remote repository").
    errors = [line for line in lines if line.startswith(("fatal:", "error:"))]
    shown = errors[0] if errors else (lines or [f"exit {done.code}"])[-1]
    return mask_credentials(f"{what}: {shown.strip()}"[:300])
