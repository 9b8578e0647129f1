"""Ray Jobs for pagent: submit an attempt, know the free capacity, stream a job's log, read its
status, stop it, and find a plan's jobs again after a crash.

A thin layer over ``ray.job_submission.JobSubmissionClient``. Ray is the optional extra
(``pip install 'pagent-run[ray]'``) and is imported only when a ``RayJobs`` is made; without it,
``RayUnavailable`` says how to install it. The client is synchronous (``requests``): every call
runs in a worker thread under a deadline, so an unresponsive head cannot hang the supervisor.

What the design rests on (Ray 2.60, measured on a loopback head; see ``/work/shared/RAY.md``):

- **Ray is not a queue.** A job still PENDING after ``RAY_JOB_START_TIMEOUT_SECONDS`` fails, and
  ``stop_job`` on a PENDING job does not cancel it: the entrypoint still runs once a slot frees.
  So ``free_slots`` is asked before every submit (the resource's total on alive nodes minus what
  unfinished jobs of any submitter hold or wait for), and every spec carries a
  ``not_after`` deadline: a job that starts later than that runs nothing.
- **Identity.** ``submission_id`` is ``pagent-<plan uid>-<run id>-<task>-<attempt>``: unique per
  attempt, so a repeated submit of the same attempt finds the job already there (Ray refuses a
  second job with the same id) instead of starting it twice. ``sweep`` lists a plan's (or a
  run's) unfinished jobs by that prefix.
- **Secrets.** ``runtime_env.env_vars`` is shown to anyone who can read the dashboard. Only the
  spec's ``env`` overlay (the plan's agent ``env``) goes there, plus Ray's own stop wait; the
  supervisor's environment never does. Credentials are best set on the nodes.
- **Logs.** ``tail_job_logs`` replays the whole log on each connection, delivers lines 1.4-2.9 s
  late, decodes the log as UTF-8 and ends *silently* at the first invalid byte (and
  ``get_job_logs`` answers HTTP 500 from then on). ``stream_log`` uses the State API's log stream
  instead (``/api/v0/logs/stream``, what ``ray logs`` uses): raw bytes, followed on the node every
  ``interval``, 20-40 ms late, read once from the start and never again (a reconnect skips what
  was already received).
- **Stop.** ``stop_job`` sends SIGTERM to the entrypoint's processes, then SIGKILL after
  ``RAY_JOB_STOP_WAIT_TIME_S``; ``submit`` sets that to the node program's kill grace plus its
  stop budget, so that the node program can stop the agent's tree and push before Ray kills it.

Log streaming needs the asyncio backend of anyio (it uses aiohttp, which ray[default] brings).
"""

from __future__ import annotations

import contextlib
import enum
import math
import os
import shlex
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar

import anyio

from supervisor.errors import EXIT_USAGE, PagentError
from supervisor.launch.node_spec import NodeSpec, encode_spec

CALL_TIMEOUT = 30.0  # seconds for one call to the Jobs API
START_TIMEOUT = 300.0  # a job not started this long after its submit runs nothing (not_after)
STOP_WAIT_MARGIN = 5  # seconds Ray waits beyond the node program's grace and stop budget
_JOB_ACTOR = "_ray_internal_job_actor_"  # Ray names a job's JobSupervisor actor this + its id
_RECONNECTS = 20  # failed log connections in a row after the job ended: its node is gone
_T = TypeVar("_T")


class RayUnavailable(PagentError):
    """The plan asks for Ray but the ``ray`` extra is not installed."""

    exit_code = EXIT_USAGE


class RayError(PagentError):
    """The Ray cluster refused or did not answer a call."""


class JobPhase(enum.Enum):
    """A Ray job's status."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"

    @property
    def terminal(self) -> bool:
        """Whether the job has ended (it will never run again)."""
        return self not in (JobPhase.PENDING, JobPhase.RUNNING)


@dataclass(frozen=True)
class JobState:
    """What the cluster says about one job."""

    submission_id: str
    phase: JobPhase
    exit_code: int | None  # the entrypoint's exit code (None while running, or when stopped)
    message: str
    error_type: str | None
    start_time: float | None  # epoch seconds
    end_time: float | None
    node_id: str | None  # where the entrypoint runs (None until it started)
    metadata: Mapping[str, str]


def submission_id(plan_uid: str, run_id: str, task_id: str, attempt: int) -> str:
    """The Ray submission id of one attempt (unique per plan, run, task and attempt)."""
    return f"{plan_prefix(plan_uid, run_id)}{task_id}-{attempt}"


def plan_prefix(plan_uid: str, run_id: str | None = None) -> str:
    """The prefix of every submission id of a plan, or of one of its runs."""
    return f"pagent-{plan_uid}-" + (f"{run_id}-" if run_id else "")


ENTRYPOINT_LIMIT = 120_000  # bytes: Ray hands the entrypoint to ``sh -c`` as one argument (128 KiB)


def entrypoint(spec: NodeSpec, python: str = "python3", args: list[str] | None = None) -> str:
    """The shell command Ray runs for ``spec``: the node program with the encoded spec (or
    ``args`` instead: ``--git URL REF SHA`` for one too large, see ``node_spec``)."""
    argv = [python, "-m", "supervisor.launch.ray_node", *(args if args is not None else encode_spec(spec))]
    return shlex.join(argv)


def _state(info: Any) -> JobState:
    return JobState(
        submission_id=info.submission_id,
        phase=JobPhase(str(info.status.value if hasattr(info.status, "value") else info.status)),
        exit_code=info.driver_exit_code,
        message=info.message or "",
        error_type=info.error_type,
        start_time=info.start_time / 1000 if info.start_time else None,
        end_time=info.end_time / 1000 if info.end_time else None,
        node_id=info.driver_node_id or None,
        metadata=dict(info.metadata or {}),
    )


class RayJobs:
    """One supervisor's connection to a Ray cluster's Jobs API. Make it with ``connect``."""

    def __init__(self, client: Any, address: str, call_timeout: float = CALL_TIMEOUT) -> None:
        self._client = client
        self.address = address.rstrip("/")
        self._timeout = call_timeout

    @classmethod
    async def connect(cls, address: str | None = None, call_timeout: float = CALL_TIMEOUT) -> RayJobs:
        """Import Ray (about a second) and connect to ``address`` (default ``$RAY_ADDRESS``).

        ``RayUnavailable`` without the extra; ``RayError`` if nobody answers there."""
        address = address or os.environ.get("RAY_ADDRESS")
        if not address:
            raise RayError("no Ray address: set [executor] address or RAY_ADDRESS (http://HOST:8265)")

        def make() -> Any:
            try:
                from ray.job_submission import JobSubmissionClient  # noqa: PLC0415 - the optional extra
            except ImportError:
                raise RayUnavailable(
                    "[executor] kind = 'ray' needs the ray extra: pip install 'pagent-run[ray]'"
                ) from None
            try:
                return JobSubmissionClient(address)
            except Exception as error:  # requests' and Ray's own errors alike
                raise RayError(f"cannot reach the Ray Jobs API at {address}: {_one_line(error)}") from None

        with anyio.fail_after(call_timeout + 10):
            client = await anyio.to_thread.run_sync(make, abandon_on_cancel=True)
        return cls(client, address, call_timeout)

    async def _call(self, what: str, fn: Callable[[], _T]) -> _T:
        try:
            with anyio.fail_after(self._timeout):
                return await anyio.to_thread.run_sync(fn, abandon_on_cancel=True)
        except TimeoutError:
            raise RayError(f"Ray {what}: no answer from {self.address} within {self._timeout:g} s") from None
        except PagentError:
            raise
        except Exception as error:
            raise RayError(f"Ray {what}: {_one_line(error)}") from None

    async def submit(
        self,
        spec: NodeSpec,
        *,
        resources: Mapping[str, float],
        python: str = "python3",
        start_timeout: float = START_TIMEOUT,
        sid: str | None = None,
        spec_args: list[str] | None = None,
    ) -> str:
        """Submit ``spec``'s attempt (as ``sid``, default ``submission_id`` of it); its submission
        id. Submitting the same id again returns the id of the job already there.
        ``spec.env`` travels in ``runtime_env.env_vars`` only; ``spec_args`` replace the encoded
        spec on the command line (``entrypoint``). ``RayError`` when the command is too long."""
        sid = sid or submission_id(spec.plan_uid, spec.run_id, spec.task_id, spec.attempt)
        if spec.not_after is None:
            spec = replace(spec, not_after=round(time.time() + start_timeout, 3))
        overlay = dict(spec.env)
        stop_wait = math.ceil(spec.kill_grace + spec.stop_budget) + STOP_WAIT_MARGIN
        env_vars = {**overlay, "RAY_JOB_STOP_WAIT_TIME_S": str(stop_wait)}
        command = entrypoint(replace(spec, env={}), python, spec_args)
        if len(command.encode()) > ENTRYPOINT_LIMIT:
            raise RayError(f"the job's command is {len(command) // 1024} KiB: more than Ray can run")
        metadata = {
            "pagent_plan": spec.plan_uid,
            "pagent_run": spec.run_id,
            "pagent_task": spec.task_id,
            "pagent_attempt": str(spec.attempt),
        }

        def call() -> str:
            try:
                return str(
                    self._client.submit_job(
                        entrypoint=command,
                        submission_id=sid,
                        entrypoint_resources=dict(resources) or None,
                        runtime_env={"env_vars": env_vars},
                        metadata=metadata,
                    )
                )
            except RuntimeError as error:
                if "already exists" in str(error):
                    return sid
                raise

        return await self._call("submit", call)

    async def status(self, sid: str) -> JobState:
        """The job's current state (about 7 ms on a loopback head)."""
        return _state(await self._call("job info", lambda: self._client.get_job_info(sid)))

    async def wait(self, sid: str, *, poll: float = 0.25, timeout: float | None = None) -> JobState:
        """Poll until the job has ended; its final state. ``TimeoutError`` after ``timeout``."""
        with anyio.fail_after(timeout):
            while True:
                state = await self.status(sid)
                if state.phase.terminal:
                    return state
                await anyio.sleep(poll)

    async def stop(self, sid: str) -> bool:
        """Ask Ray to stop the job (SIGTERM now, SIGKILL after the stop wait); False if it had
        already ended. A PENDING job is not cancelled by this (see the module docstring)."""
        return bool(await self._call("stop", lambda: self._client.stop_job(sid)))

    async def forget(self, sid: str) -> bool:
        """Delete an ended job's record and log from the cluster (its log was streamed already):
        keeps ``list_jobs`` (which the sweep reads) short over a long night."""
        return bool(await self._call("delete", lambda: self._client.delete_job(sid)))

    async def jobs(self, prefix: str) -> list[JobState]:
        """Every job on the cluster whose submission id starts with ``prefix``."""
        found = await self._call("list jobs", self._client.list_jobs)
        return [_state(j) for j in found if (j.submission_id or "").startswith(prefix)]

    async def sweep(self, prefix: str) -> list[JobState]:
        """The unfinished jobs with ``prefix`` (a plan's or a run's, ``plan_prefix``): after a
        supervisor crash, the jobs it left on the cluster."""
        return [job for job in await self.jobs(prefix) if not job.phase.terminal]

    async def free_slots(self, resources: Mapping[str, float]) -> int:
        """How many more jobs needing ``resources`` each fit on the cluster now (``Usage``)."""
        usage = await self._call("cluster resources", lambda: cluster_usage(self.address))
        return usage.fits(resources)

    async def node_ip(self, node_id: str) -> str | None:
        """The address of the alive node ``node_id`` (its ``node:<ip>`` resource pins a job to
        it), or ``None`` when it is gone."""

        def ask() -> str | None:
            from ray.util.state import list_nodes  # noqa: PLC0415 - the optional extra

            filters: list[tuple[str, str, str | bool | int | float]] = [("node_id", "=", node_id)]
            for node in list_nodes(address=self.address, filters=filters, limit=10):
                if str(node.state) == "ALIVE" and node.node_ip:
                    return str(node.node_ip)
            return None

        return await self._call("node", ask)

    async def wait_for_slot(
        self,
        resources: Mapping[str, float],
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        """Return once a job needing ``resources`` fits (``free_slots`` >= 1); ``on_wait`` is
        called once if it has to wait, so that a run can say so once. The caller must submit
        under the same lock as it admits: two submits on one free slot leave one job PENDING."""
        told = False
        with anyio.fail_after(timeout):
            while await self.free_slots(resources) < 1:
                if not told and on_wait is not None:
                    on_wait()
                told = True
                await anyio.sleep(poll)

    async def stream_log(
        self, sid: str, *, interval: float = 0.1, idle: float = 1.0, drain: float = 2.0
    ) -> AsyncIterator[bytes]:
        """The job's log as raw bytes, from its first byte, as it is written. Waits (polling)
        while the job is PENDING; yields nothing for a job that ended without starting.

        It ends once the job has ended and nothing came for ``drain`` seconds (the status is
        looked at after ``idle`` seconds without data). A reader that knows the nonce stops at
        the RESULT record instead; ``drain`` matters when the job's Ray side died first (its
        status turns FAILED at once while the node program still stops the tree and pushes):
        pass the node program's kill grace plus its stop budget to get its result then."""
        import aiohttp  # noqa: PLC0415 - comes with the optional extra

        received = 0
        failures = 0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            while True:
                state = await self.status(sid)
                if state.phase.terminal and failures >= _RECONNECTS:
                    return  # the log is out of reach for good (its node died with the job)
                if state.node_id is None:
                    if state.phase.terminal:
                        return
                    await anyio.sleep(0.25)
                    continue
                params = {
                    "node_id": state.node_id,
                    "submission_id": sid,
                    "lines": "-1",
                    "interval": str(interval),
                }
                skip = received
                failures += 1  # until the stream answers
                with contextlib.suppress(aiohttp.ClientError):
                    async with session.get(f"{self.address}/api/v0/logs/stream", params=params) as response:
                        if response.status != 200:
                            # The node may not have opened the log yet; an ended job has no more.
                            if state.phase.terminal:
                                return
                            await anyio.sleep(0.25)
                            continue
                        failures = 0
                        last_data = time.monotonic()
                        ended = state.phase.terminal
                        while True:
                            with anyio.move_on_after(idle) as scope:
                                chunk = await response.content.readany()
                            if scope.cancelled_caught:
                                ended = ended or (await self.status(sid)).phase.terminal
                                if ended and time.monotonic() - last_data >= drain:
                                    return
                                continue
                            if not chunk:
                                break  # the server closed the stream: reconnect, skip what we have
                            last_data = time.monotonic()
                            if skip:
                                chunk, skip = chunk[skip:], max(0, skip - len(chunk))
                                if not chunk:
                                    continue
                            received += len(chunk)
                            yield chunk
                await anyio.sleep(0.25)


@dataclass(frozen=True)
class Usage:
    """What the cluster's alive nodes offer and what each unfinished job holds or waits for.

    A job's resources are held by its JobSupervisor actor (``JobDetails`` does not show them):
    ALIVE while it runs, PENDING_CREATION while it waits. Counting those actors covers every
    submitter's jobs, including ones submitted a moment ago."""

    total: Mapping[str, float]
    held: Mapping[str, Mapping[str, float]]  # submission id -> what its job holds

    def fits(self, resources: Mapping[str, float], ignore: Collection[str] = ()) -> int:
        """How many more jobs needing ``resources`` each fit, not counting what the jobs in
        ``ignore`` hold (0 when ``resources`` names nothing)."""
        used: dict[str, float] = {}
        for sid, holds in self.held.items():
            if sid in ignore:
                continue
            for name, amount in holds.items():
                used[name] = used.get(name, 0.0) + amount
        fits = [
            math.floor((self.total.get(name, 0.0) - used.get(name, 0.0)) / need + 1e-9)
            for name, need in resources.items()
            if need > 0
        ]
        return max(0, min(fits, default=0))


def cluster_usage(address: str, timeout: int = int(CALL_TIMEOUT)) -> Usage:
    """The cluster's ``Usage`` now (blocking: call it from a worker thread)."""
    from ray.util.state import list_actors, list_nodes  # noqa: PLC0415 - the optional extra

    total: dict[str, float] = {}
    alive: list[tuple[str, str, str | bool | int | float]] = [("state", "=", "ALIVE")]
    for node in list_nodes(address=address, filters=alive, limit=10_000, timeout=timeout):
        for name, amount in (node.resources_total or {}).items():
            total[name] = total.get(name, 0.0) + float(amount)
    held: dict[str, dict[str, float]] = {}
    supervisors: list[tuple[str, str, str | bool | int | float]] = [
        ("class_name", "=", "JobSupervisor"),
        ("state", "!=", "DEAD"),
    ]
    found = list_actors(address=address, filters=supervisors, detail=True, limit=10_000, timeout=timeout)
    for index, actor in enumerate(found):
        sid = (actor.name or "").removeprefix(_JOB_ACTOR) or f"?{index}"
        held[sid] = {name: float(amount) for name, amount in (actor.required_resources or {}).items()}
    return Usage(total, held)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__
