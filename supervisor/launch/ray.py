"""``RayExecutor``: attempts as Ray jobs on a cluster's nodes (``[executor] kind = "ray"``).

It fills the executor seam (``supervisor.seam``) with what runs elsewhere:

- **workspaces**: an injected ``RemoteWorkspaces`` (``supervisor.workspace.remote``) keeps the
  task's branch in the plan's repository and carries it through the git remote: before each
  attempt the remote's branch is put where the plan's is, after it the node's pins are fetched
  and the branch set to them, so diff stats, overlaps and integration work as for local tasks;
- **an attempt** is a job running the node program (``ray_node``, mode ``attempt``) with a
  ``NodeSpec`` made from the ``AttemptSpec``: the prompt's text, the environment overlay only
  (``runtime_env.env_vars``, shown on the dashboard: never this process's environment), the
  steps told in advance (marker, auto-commit, kill grace, how often to sample), the commit the
  remote's branch must be at, a random nonce for its records; it is submitted only into free
  capacity (``ray_admission``) as ``pagent-<plan uid>-<run>-<task>-<attempt>``;
- **verify** (``AttemptSpec.verify``) is a job of its own in mode ``verify``, pinned to the node
  that ran the attempt (its ``node:<ip>`` resource, nothing else: it uses the attempt's slot),
  in the workspace the attempt left there at the commit that came home;
- **a spec without a workspace** (an agent's preflight prompt, ``version``) is a ``scratch`` job
  needing no resource;
- **sweep** stops this plan's unfinished jobs (by their id prefix, and the references of
  attempts that never ended) and, on this machine, what pagent's own git left running.

Ray is imported (by ``ray_jobs``) on the first call that needs the cluster, never before: a
plan's validation does not pay for it. Connecting also resolves the remote's URL for the nodes
(``PlanError`` when the repository has no such remote, or its URL carries a password).
"""

from __future__ import annotations

import base64
import contextlib
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

import anyio

from supervisor.errors import GitError, PagentError, PlanError
from supervisor.launch import proctree
from supervisor.launch.node_spec import NodeSpec
from supervisor.launch.ray_admission import Admission
from supervisor.launch.ray_handle import RayHandle
from supervisor.launch.ray_jobs import (
    ENTRYPOINT_LIMIT,
    STOP_WAIT_MARGIN,
    RayJobs,
    cluster_usage,
    entrypoint,
    plan_prefix,
    submission_id,
)
from supervisor.plan.executor import password_problem
from supervisor.plan.model import ExecutorConfig
from supervisor.seam import (
    AttemptKey,
    AttemptSpec,
    Begun,
    CollectRequest,
    Facts,
    OutputCallback,
    Stream,
    Workspace,
    WorkspaceRequest,
)

STOP_BUDGET = 60.0  # seconds the node program has after a stop to commit and push
GIT_TIMEOUT = 300.0  # each network git call on a node
VERSION_TIMEOUT = 60.0
UNCONFINED = "the Ray executor runs attempts unconfined on its nodes (no bubblewrap there)"


class RemoteWorkspaces(Protocol):
    """Where the Ray executor's tasks work (``supervisor.workspace.remote.RemoteBranches``)."""

    async def url(self) -> str:
        """The remote's URL, as the nodes reach it."""

    async def prepare(self, request: WorkspaceRequest) -> Workspace: ...

    async def begin(self, workspace: Workspace) -> Begun: ...

    async def collect(
        self, workspace: Workspace, request: CollectRequest, report: Mapping[str, Any] | None
    ) -> Facts: ...

    async def carry(self, data: str, ref: str) -> str:
        """``data`` as a blob at ``ref`` on the remote; its sha."""


@dataclass(frozen=True)
class _Job:
    """What to submit for one ``start``."""

    spec: NodeSpec
    sid: str
    resources: Mapping[str, float]
    admitted: bool  # an agent's attempt: only into free capacity


class RayExecutor:
    """Runs attempts as Ray jobs; see the module docstring and ``supervisor.seam``."""

    def __init__(
        self, workspaces: RemoteWorkspaces, config: ExecutorConfig, *, plan_uid: str, label: str, jobs: int
    ) -> None:
        self._workspaces = workspaces
        self._config = config
        self._plan_uid = plan_uid
        self._label = label  # the plan file's name, for its errors
        self._admission = Admission(config.resources, jobs)
        self._jobs: RayJobs | None = None
        self._url = ""
        self._connecting = anyio.Lock()
        self._begun: dict[Path, str] = {}  # a workspace's commit when its latest attempt began
        self._tips: dict[Path, str] = {}  # ... and its branch's commit after its latest collect
        self._reports: dict[tuple[Path, int], dict[str, Any]] = {}  # the node's RESULT records
        self._nodes: dict[tuple[Path, int], str] = {}  # where each attempt ran (Ray node ids)

    async def _connect(self) -> RayJobs:
        """The cluster's Jobs API, connected once (``RayError``, ``RayUnavailable``, ``PlanError``)."""
        async with self._connecting:
            if self._jobs is None:
                try:
                    url = await self._workspaces.url()
                except GitError as exc:
                    raise PlanError(f"{self._label}: executor.remote: {exc}") from None
                if problem := password_problem(url):
                    raise PlanError(f"{self._label}: executor.remote: {problem}")
                jobs = await RayJobs.connect(self._config.address)
                usage = await anyio.to_thread.run_sync(cluster_usage, jobs.address, abandon_on_cancel=True)
                self._jobs, self._url = jobs, url
                self._admission.connected(jobs.address, usage)
            return self._jobs

    # -- admission and limits ----------------------------------------------------------
    def capacity_problem(self, memory: int) -> str | None:
        """No free capacity for the plan's resources on the cluster (``min_free_memory`` is not
        looked at: each node's resources say what it can take)."""
        return self._admission.problem()

    def confinement_problem(self) -> str | None:
        return UNCONFINED

    def capacity_limit(self) -> int | None:
        return None  # memory is the nodes' business (resources)

    # -- workspaces --------------------------------------------------------------------
    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        await self._connect_or_oserror()
        return await self._workspaces.prepare(request)

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun:
        """The remote's branch where the plan's is (the node removes a stale marker itself)."""
        begun = await self._workspaces.begin(workspace)
        self._begun[workspace.path] = begun.head
        return begun

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        report = self._reports.get((workspace.path, request.attempt))
        facts = await self._workspaces.collect(workspace, request, report)
        if facts.branch_tip is not None:
            self._tips[workspace.path] = facts.branch_tip
        return facts

    async def _connect_or_oserror(self) -> RayJobs:
        try:
            return await self._connect()
        except PlanError:
            raise
        except PagentError as exc:
            raise OSError(str(exc)) from None

    # -- attempts ----------------------------------------------------------------------
    @asynccontextmanager
    async def start(self, spec: AttemptSpec, on_output: OutputCallback) -> AsyncIterator[RayHandle]:
        """Submit ``spec``'s job and yield its handle; on leaving, the job has ended (stopped if
        need be) and is deleted from the cluster. ``OSError`` if it cannot be submitted."""
        jobs = await self._connect_or_oserror()
        job = await self._job_for(spec, jobs)
        try:
            if job.admitted:
                sid = await self._admission.take(
                    lambda: anyio.to_thread.run_sync(cluster_usage, jobs.address, abandon_on_cancel=True),
                    lambda: self._submit(jobs, job),
                )
            else:
                sid = await self._submit(jobs, job)
        except PagentError as exc:
            raise OSError(str(exc)) from None
        after = job.spec.kill_grace + 5 + job.spec.stop_budget + job.spec.git_timeout
        handle = RayHandle(jobs, sid, job.spec, on_output, after=after)
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(handle.follow)
                tg.start_soon(handle.guard)
                try:
                    yield handle
                finally:
                    with anyio.CancelScope(shield=True):
                        await handle.close()
                    tg.cancel_scope.cancel()
        finally:
            self._admission.ended(sid)
            if spec.workspace is not None and not spec.verify:
                where = (spec.workspace.path, spec.attempt)
                if handle.result is not None:
                    self._reports[where] = handle.result
                if handle.node_id is not None:
                    self._nodes[where] = handle.node_id

    async def _submit(self, jobs: RayJobs, job: _Job) -> str:
        """Submit ``job``; a spec too large for a command line (Ray runs it through ``sh -c``)
        travels as a blob on the remote (``refs/pagent-specs/<run>/<task>/<attempt>-<mode>``),
        the command naming it."""
        args = None
        if len(entrypoint(job.spec, self._config.python).encode()) > ENTRYPOINT_LIMIT:
            spec = job.spec
            ref = f"refs/pagent-specs/{spec.run_id}/{spec.task_id}/{spec.attempt}-{spec.mode}"
            try:
                sha = await self._workspaces.carry(replace(spec, env={}).to_json(), ref)
            except GitError as exc:
                raise OSError(f"cannot push the attempt's spec to the remote: {exc}") from None
            args = ["--git", self._url, ref, sha]
        return await jobs.submit(
            job.spec,
            resources=job.resources,
            python=self._config.python,
            start_timeout=self._config.start_timeout,
            sid=job.sid,
            spec_args=args,
        )

    async def _job_for(self, spec: AttemptSpec, jobs: RayJobs) -> _Job:
        """The node program's spec, the submission id and the resources for ``spec``."""
        key, steps = spec.key, spec.steps
        values: dict[str, Any] = {
            "plan_uid": key.plan or self._plan_uid,
            "run_id": key.run_id,
            "task_id": key.task_id,
            "attempt": max(1, key.attempt),
            "argv": tuple(spec.argv),
            "prompt": spec.prompt_file.read_text(errors="replace") if spec.prompt_file is not None else "",
            "nonce": secrets.token_hex(8),
            "env": dict(spec.env),
            "wave": spec.env.get("PAGENT_WAVE", ""),
            "kill_grace": steps.kill_grace if steps is not None else 2.0,
            "git_timeout": GIT_TIMEOUT,
            "stop_budget": STOP_BUDGET,
            "not_after": round(time.time() + self._config.start_timeout, 3),
            "files": {name: base64.b64encode(data).decode() for name, data in spec.files.items()},
            "home": spec.home,
        }
        prefix = plan_prefix(values["plan_uid"], key.run_id)
        workspace = spec.workspace
        if workspace is None or workspace.branch is None:
            node = NodeSpec(**values, mode="scratch", remote="", branch="", start_commit="")
            sid = f"{prefix}{key.task_id}-{key.attempt}-{secrets.token_hex(3)}"
            return _Job(node, sid, {}, admitted=False)
        workdir = _workdir(spec.cwd, workspace.path)
        common = {**values, "remote": self._url, "branch": workspace.branch, "workdir": workdir}
        sid = submission_id(values["plan_uid"], key.run_id, key.task_id, key.attempt)
        if spec.verify:
            return await self._verify_job(spec, jobs, common, f"{sid}-verify")
        start = self._begun.get(workspace.path) or workspace.head
        if start is None:
            raise OSError(f"no commit recorded for branch {workspace.branch}")
        node = NodeSpec(
            **common,
            mode="attempt",
            start_commit=start,
            start_ref=f"refs/heads/{workspace.branch}",
            expect_remote=start,
            force_push=True,  # the remote's branch is pagent's own for this run (``begin``)
            done_marker=steps.marker if steps is not None else None,
            auto_commit=steps.auto_commit if steps is not None else True,
            sample_interval=steps.sample_every if steps is not None else 5.0,
        )
        return _Job(node, sid, self._config.resources, admitted=True)

    async def _verify_job(self, spec: AttemptSpec, jobs: RayJobs, common: dict[str, Any], sid: str) -> _Job:
        """The verify of the attempt that just ran: on its node, at the commit that came home."""
        assert spec.workspace is not None
        where = (spec.workspace.path, spec.attempt)
        commit = self._tips.get(spec.workspace.path)
        node_id = self._nodes.get(where)
        if commit is None or node_id is None:
            raise OSError(f"attempt {spec.attempt} left no workspace on a node to verify")
        ip = await jobs.node_ip(node_id)
        if ip is None:
            raise OSError(f"the node that ran attempt {spec.attempt} is gone: verify cannot run there")
        pins = f"refs/pagent/{spec.run_id}/{spec.task_id}/{spec.attempt}"
        node = NodeSpec(
            **common, mode="verify", start_commit=commit, start_ref=pins, verify_timeout=7 * 86400.0
        )
        return _Job(node, sid, {f"node:{ip}": 0.001}, admitted=False)

    # -- after a crash, and probes ----------------------------------------------------
    async def sweep(self, prefix: str, refs: Sequence[str], grace: float) -> int:
        """Stop this plan's unfinished jobs (``prefix`` is the plan's key prefix) and the jobs
        ``refs`` name, waiting (bounded) for the running ones to end; and the processes on this
        machine that carry the plan's cookie (pagent's own git). How many were stopped."""
        procs = list(proctree.with_cookie(prefix))
        if procs:
            await proctree.stop_processes(procs, None, grace)
        jobs = await self._connect()
        uid = prefix.rstrip(":")
        found = {job.submission_id: job for job in await jobs.sweep(plan_prefix(uid))}
        for ref in refs:
            if ref.startswith(plan_prefix(uid)) and ref not in found:
                with contextlib.suppress(PagentError):  # the sweep goes on
                    state = await jobs.status(ref)
                    if not state.phase.terminal:
                        found[ref] = state
        for sid in found:
            with contextlib.suppress(PagentError):  # the sweep goes on
                await jobs.stop(sid)
        running = [sid for sid, job in found.items() if job.node_id is not None]
        with anyio.move_on_after(grace + 5 + STOP_BUDGET + STOP_WAIT_MARGIN):
            for sid in running:
                with contextlib.suppress(PagentError):  # the sweep goes on
                    await jobs.wait(sid, poll=0.5)
        return len(procs) + len(found)

    async def version(self, argv: Sequence[str], env: Mapping[str, str], home: str | None = None) -> str:
        """``argv[0] --version`` on a node (see ``supervisor.seam.Executor.version``)."""
        key = AttemptKey(self._plan_uid, "version", "probe", 1)
        probe = AttemptSpec(key, (argv[0], "--version"), env, None, None, home=home)
        out = bytearray()

        def on_output(data: bytes, stream: Stream) -> None:
            out.extend(data)

        async with self.start(probe, on_output) as handle:
            with anyio.move_on_after(VERSION_TIMEOUT + self._config.start_timeout) as scope:
                exit = await handle.wait()
            if scope.cancelled_caught:
                raise TimeoutError(f"{argv[0]} --version")
            await handle.finish(2.0)
        if exit.code == 127:
            raise OSError(2, "not found on the Ray node", argv[0])
        lines = bytes(out).decode(errors="replace").strip().splitlines()
        return lines[0] if lines and exit.code == 0 else "unknown"


def _workdir(cwd: Path | None, top: Path) -> str | None:
    """The agent's directory relative to its workspace (``None``: the workspace itself)."""
    if cwd is None or cwd == top:
        return None
    try:
        relative = cwd.relative_to(top)
    except ValueError:
        return None
    return str(relative) if str(relative) != "." else None
