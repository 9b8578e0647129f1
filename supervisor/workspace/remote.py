"""Remote workspaces: a task's branch worked on elsewhere (a Ray node), through a git remote.

Nodes share no disk with the supervisor: git is the data plane. The task's branch lives in the
plan's repository, as for every workspace; the remote (one every node can reach) carries it to
the node and the attempt's work back. ``RemoteBranches`` keeps the executor seam's promises for
that, each call a coroutine whose git dies when its await is cancelled:

- ``prepare``: the branch claimed in the plan's repository exactly as for a clone (reserved, a
  planted commit pinned and replaced, a rewritten branch refused); on a later invocation of the
  run, what its crashed attempts pushed is fetched first -- their pins (never replacing one) and
  the branch, put onto the task's branch when it descends from it;
- ``begin``: the remote's branch set to the plan's (``--force-with-lease`` against what the
  remote holds, and only when that is pagent's own: a commit this run pinned, or one the branch
  already contains; a branch someone else pushed there is never overwritten, the attempt fails
  instead); nothing else on the remote moves;
- ``collect``: the attempt's pins fetched from the remote into the plan's repository
  (``<pins>/<attempt>``: the branch's commit, ``-head``: a differing HEAD, both pushed by the
  node), the task branch set to them when they descend from the task's start, then what
  changed, the diff stats and the repository's branches and tags; the node's own facts (the
  marker, the auto-commit, uncommitted work) come from its report. When nothing came back, the
  branch's commit is pinned all the same and ``GitError`` says why. When it returns, the
  commits are home.
- ``carry``: a blob pushed to a ref of the remote (a Ray job's spec too large for its command
  line, under ``refs/pagent-specs/``).

Network calls (``ls-remote``, ``fetch``, ``push``) are bounded by ``NET_TIMEOUT`` and run with
the runner's guarantees (no prompt, no hook). The remote is always given by URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor.errors import GitError
from supervisor.seam import Begun, CollectRequest, Facts, Workspace, WorkspaceRequest
from supervisor.workspace import clone, facts, refs
from supervisor.workspace.git import commit_of, git, in_thread, is_ancestor, run_git, shown
from supervisor.workspace.worktree import checked_tip, ensure_branch

NET_TIMEOUT = 300.0
_FETCH = ("fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules")


def remote_url(repo: Path, remote: str) -> str:
    """The URL of ``remote`` (a remote's name in ``repo``, or already a URL or path) as the
    nodes must be given it: a local path made absolute; ``GitError`` if there is no such remote."""
    if "/" in remote or ":" in remote:
        url = remote
    else:
        done = run_git(["remote", "get-url", "--push", remote], repo)
        if done.code != 0:
            raise GitError(f"no remote {remote!r} in {repo}")
        url = done.stdout.strip()
    if "://" in url or (":" in url.split("/", 1)[0] and not url.startswith("/")):
        return url  # a URL, or scp-like host:path
    path = Path(url)
    if path.is_absolute():
        return str(path)
    top = Path(git(["rev-parse", "--show-toplevel"], repo).strip())
    return str((top / path).resolve())


def ls_remote(repo: Path, url: str, refs_wanted: list[str]) -> dict[str, str]:
    """The remote's commits of ``refs_wanted`` that exist there (full ref names)."""
    out = git(["ls-remote", "--", url, *refs_wanted], repo, timeout=NET_TIMEOUT)
    found: dict[str, str] = {}
    for line in out.splitlines():
        sha, _, name = line.partition("\t")
        if name in refs_wanted:
            found[name] = sha
    return found


def _known(repo: Path, commit: str) -> bool:
    return run_git(["cat-file", "-e", f"{commit}^{{commit}}"], repo).code == 0


def _fetch(repo: Path, url: str, specs: list[str]) -> None:
    """Fetch ``specs`` (``src:dst``, never forced: an existing pin is never replaced)."""
    if specs:
        git([*_FETCH, "--", url, *specs], repo, timeout=NET_TIMEOUT)


class RemoteBranches:
    """The Ray executor's workspaces (see the module docstring), for one plan's repository and
    one remote; ``url`` is resolved on first use."""

    def __init__(self, repo: Path, remote: str) -> None:
        self._repo = repo
        self._remote = remote
        self._url: str | None = None
        self._pins: dict[Path, str] = {}  # a workspace's pins prefix, from its request

    async def url(self) -> str:
        """The remote's URL for the nodes (``GitError`` if the repository has no such remote)."""
        if self._url is None:
            self._url = await in_thread(remote_url, self._repo, self._remote)
        return self._url

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        """Claim the branch, bring home what crashed attempts pushed; the workspace (a key: it
        exists on the nodes only)."""
        url = await self.url()
        workspace = await in_thread(prepare, request, url)
        if request.pins is not None:
            self._pins[workspace.path] = request.pins
        return workspace

    async def begin(self, workspace: Workspace) -> Begun:
        """The remote's branch at the plan's; the branch's commit and the refs now."""
        return await in_thread(begin, workspace, await self.url(), self._pins.get(workspace.path))

    async def collect(
        self, workspace: Workspace, request: CollectRequest, report: Mapping[str, Any] | None
    ) -> Facts:
        """The attempt's pins fetched and the branch set to them; the facts."""
        return await in_thread(collect, workspace, request, await self.url(), report)

    async def carry(self, data: str, ref: str) -> str:
        """``data`` as a blob at ``ref`` on the remote; its sha."""
        return await in_thread(carry, self._repo, await self.url(), data, ref)


def carry(repo: Path, url: str, data: str, ref: str) -> str:
    """``data`` written as a blob (into ``repo``'s objects) and pushed to ``ref`` on the remote;
    its sha. For what is too large to hand a Ray job on its command line."""
    sha = git(["hash-object", "-w", "--stdin"], repo, stdin=data).strip()
    done = run_git(["push", "--quiet", "--no-verify", "--", url, f"+{sha}:{ref}"], repo, timeout=NET_TIMEOUT)
    if done.code != 0:
        raise GitError(f"git push of {ref}: {done.last_line()}")
    return sha


def prepare(request: WorkspaceRequest, url: str) -> Workspace:
    """``RemoteBranches.prepare``, synchronously."""
    repo, branch = request.repo, request.branch
    if branch is None:
        raise GitError("a remote workspace needs a task branch (isolation = 'none' cannot run remotely)")
    ensure_branch(repo, branch, request.start, expect=request.expect, fresh=request.fresh, pins=request.pins)
    if not request.fresh and request.pins is not None:
        _recover(repo, url, branch, request.pins)
    tip = checked_tip(repo, branch, expect=request.expect, pins=request.pins)
    cwd = request.path / request.workdir if request.workdir else request.path
    return Workspace(request.path, branch, tip, request.fresh, cwd, repo, kind="clone")


def _recover(repo: Path, url: str, branch: str, pins: str) -> None:
    """What attempts of an earlier invocation pushed and nobody fetched (their supervisor died):
    their pins, and the remote's branch onto the task's when it descends from it."""
    # Never forced, and a pin that exists here already is kept as it is (git refuses that one
    # and fetches the others): a failure of the remote itself shows in the next call.
    run_git([*_FETCH, "--", url, f"{pins}/*:{pins}/*"], repo, timeout=NET_TIMEOUT)
    ref = f"refs/heads/{branch}"
    there = ls_remote(repo, url, [ref]).get(ref)
    tip = commit_of(repo, ref)
    if there is None or tip is None or there == tip:
        return
    if not _known(repo, there):
        _fetch(repo, url, [f"{ref}:{pins}/recovered-{there[:12]}"])
    if is_ancestor(repo, tip, there):
        clone.integrate(repo, branch, there, tip)


def _ours(repo: Path, commit: str, tip: str, pins: str | None) -> bool:
    """Whether the remote's ``commit`` may be replaced by ``tip``: pagent has it, in the branch
    or pinned by this run (nothing of anyone's is lost)."""
    if not _known(repo, commit):
        return False
    if is_ancestor(repo, commit, tip):
        return True
    if pins is None:
        return False
    holding = git(["for-each-ref", "--contains", commit, "--format=%(refname)", f"{pins}/"], repo)
    return bool(holding.strip())


def begin(workspace: Workspace, url: str, pins: str | None) -> Begun:
    """``RemoteBranches.begin``, synchronously."""
    repo, branch = workspace.repo, workspace.branch
    if repo is None or branch is None:
        raise GitError("a remote workspace needs its repository and branch")
    ref = f"refs/heads/{branch}"
    tip = commit_of(repo, ref)
    if tip is None:
        raise GitError(f"branch {branch} is gone (its commits are pinned under {pins})")
    there = ls_remote(repo, url, [ref]).get(ref)
    if there != tip:
        if there is not None and not _ours(repo, there, tip, pins):
            raise GitError(
                f"the remote already has a branch {branch} (at {there[:12]}) that this run did not "
                "push there: pagent never overwrites it; delete or rename it on the remote"
            )
        lease = f"--force-with-lease={ref}:{there or ''}"
        done = run_git(
            ["push", "--porcelain", "--no-verify", lease, "--", url, f"{tip}:{ref}"],
            repo,
            timeout=NET_TIMEOUT,
        )
        if done.code != 0:
            raise GitError(f"git push of {branch} to the remote: {done.last_line()}")
    return Begun(tip, refs.snapshot(repo))


def collect(
    workspace: Workspace, request: CollectRequest, url: str, report: Mapping[str, Any] | None
) -> Facts:
    """``RemoteBranches.collect``, synchronously (see the module docstring)."""
    repo, branch = workspace.repo, workspace.branch
    if repo is None or branch is None:
        raise GitError("a remote workspace needs its repository and branch")
    ref = f"refs/heads/{branch}"
    pin = f"{request.pins}/{request.attempt}" if request.pins else f"refs/pagent/+remote/{request.attempt}"
    there = ls_remote(repo, url, [pin, f"{pin}-head"])
    if pin not in there:
        tip = commit_of(repo, ref)  # nothing came back: the branch as it is, pinned all the same
        if tip is not None:
            refs.pin(repo, pin, tip, f"the end of attempt {request.attempt} on {branch} (nothing came back)")
        raise GitError(_nothing_back(report))
    _fetch(repo, url, [f"{name}:{name}" for name in there if commit_of(repo, name) is None])
    mine = there[pin]
    head = there.get(f"{pin}-head", mine)
    report = report or {}
    descends = is_ancestor(repo, request.start_commit, mine)
    if descends:
        clone.integrate(repo, branch, mine, request.start_commit)
    tip = commit_of(repo, ref)
    out = git(["diff", "--name-only", "-z", "--no-renames", request.head_before, head], repo)
    changed = tuple(shown(p) for p in out.split("\0") if p)
    exclude = [request.marker] if request.marker else []
    diff = None
    if tip is not None:
        try:
            dirty = bool(report.get("dirty"))
            diff = facts.diff_stats(repo, request.start_commit, exclude, head=tip, uncommitted=dirty)
        except GitError:  # no history shared with the start any more: nothing to measure against
            diff = None
    return Facts(
        bool(report.get("marker")),
        bool(report.get("auto_committed")),
        changed,
        diff,
        head=head,
        branch_tip=tip,
        # HEAD on the node's branch, and that branch home (or refused: ``descends`` says why).
        on_branch=bool(report.get("on_branch", True))
        and tip is not None
        and head == mine
        and (tip == mine or not descends),
        descends=descends,
        pinned=tuple(name for name in (pin, f"{pin}-head") if name in there),
        refs=refs.snapshot(repo),
    )


def _nothing_back(report: Mapping[str, Any] | None) -> str:
    """Why no pin of the attempt reached the remote, in one line."""
    if report is None:
        return "the node program reported no result (its job ended without one)"
    where = f" on node {report.get('node')}" if report.get("node") else ""
    if report.get("error"):
        return f"{report.get('phase') or 'node'}{where}: {report['error']}"
    return f"the attempt's work did not reach the remote{where}"
