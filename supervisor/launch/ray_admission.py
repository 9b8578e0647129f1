"""Admission to a Ray cluster: submit an attempt's job only into free capacity, and say when a run
waits for it.

Ray is not a queue (a PENDING job fails after the head's start timeout, and stopping it does not
cancel it), so every attempt's job is submitted only when a job needing the plan's resources
fits *now*: ``take`` asks the cluster (``ray_jobs.cluster_usage``) and submits under one lock,
so that two of this supervisor's attempts never count the same free slot. It waits (polling)
while nothing fits, at most ``bound`` seconds, then refuses (``OSError``: the attempt fails
``launch-failed`` and is retried by the policy): while an attempt is being started the engine
cannot stop it, so this wait must stay short. Ray frees a job's resources a moment after the
job ends, which is what this wait mostly covers.

The engine's gate asks ``problem`` (synchronously) before it lets a task take one of the plan's
``jobs`` slots: that is where a run waits for long, stop-responsive, and says once that it
waits. ``problem`` answers from a snapshot of the cluster refreshed in a worker thread at most
once a second while it is asked, and from this supervisor's own bookkeeping: its live jobs, and
the admissions it gave that no submit has used yet (each expires after ``TOKEN_TTL``). Jobs of
this supervisor are told apart from everyone else's by their submission ids. A task beyond the
plan's ``jobs`` is not a capacity problem (the gate's slots hold it): it is admitted without a
look at the cluster.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Awaitable, Callable, Mapping

import anyio

from supervisor.launch.ray_jobs import Usage, cluster_usage

TOKEN_TTL = 30.0  # seconds an admission waits for its submit (the workspace's push comes between)
SNAPSHOT_AGE = 1.0  # seconds before ``problem`` asks the cluster again
POLL = 0.5


class Admission:
    """This supervisor's admissions to one cluster (see the module docstring)."""

    def __init__(self, resources: Mapping[str, float], jobs: int, *, bound: float = 60.0) -> None:
        self.resources = dict(resources)
        self.jobs = jobs
        self.bound = bound
        self.address: str | None = None  # set once connected
        self._lock = anyio.Lock()
        self._mine: set[str] = set()  # every job this supervisor submitted
        self._live: set[str] = set()  # ... and those not ended yet
        self._tokens: collections.deque[float] = collections.deque()
        self._usage: Usage | None = None
        self._usage_at = 0.0
        self._guard = threading.Lock()
        self._asking = False

    @property
    def wanted(self) -> str:
        """The resources one job needs, as people read them: ``agent_slot=1``."""
        return ", ".join(f"{name}={amount:g}" for name, amount in self.resources.items())

    def connected(self, address: str, usage: Usage) -> None:
        """Connected to the cluster at ``address``, which is ``usage`` now."""
        self.address = address
        self._usage, self._usage_at = usage, time.monotonic()

    def problem(self) -> str | None:
        """Why a task must wait for the cluster now (said once by the gate), or ``None`` (then it
        counts as admitted until it submits, or ``TOKEN_TTL`` passes)."""
        now = time.monotonic()
        while self._tokens and now - self._tokens[0] > TOKEN_TTL:
            self._tokens.popleft()
        if self.address is None:
            return None
        if now - self._usage_at > SNAPSHOT_AGE:
            self._ask_soon()
        ours = len(self._live) + len(self._tokens)
        if self._usage is None or ours >= self.jobs:
            return None
        room = self._usage.fits(self.resources, ignore=self._mine)  # for this run's jobs
        if room - ours >= 1:
            self._tokens.append(now)
            return None
        everything = self._usage.fits(self.resources, ignore=self._usage.held)
        who = f"{len(self._live)} of this run's jobs and other jobs hold it"
        if room == everything:  # nobody else holds any: the cluster is smaller than ``jobs``
            who = f"the cluster has room for {everything} such jobs, this run holds {len(self._live)}"
        where = f"the Ray cluster at {self.address}"
        return f"waiting for cluster capacity: no free {self.wanted} on {where} ({who})"

    def _ask_soon(self) -> None:
        """Refresh the snapshot in a worker thread (one at a time)."""
        with self._guard:
            if self._asking or self.address is None:
                return
            self._asking = True
        address = self.address

        def ask() -> None:
            try:
                usage = cluster_usage(address, timeout=10)
            except Exception:  # the next look asks again; the submit's own check is the real one
                usage = None
            with self._guard:
                if usage is not None:
                    self._usage, self._usage_at = usage, time.monotonic()
                self._asking = False

        threading.Thread(target=ask, name="pagent-ray-capacity", daemon=True).start()

    async def take(self, ask: Callable[[], Awaitable[Usage]], submit: Callable[[], Awaitable[str]]) -> str:
        """Wait (at most ``bound`` seconds) until a job fits, by the cluster's answer (``ask``),
        then ``submit`` it (never cancelled half-way: a job must not be left unknown); its id.
        ``OSError`` when nothing fitted in time."""
        async with self._lock:
            deadline = time.monotonic() + self.bound
            while True:
                usage = await ask()
                self._usage, self._usage_at = usage, time.monotonic()
                if usage.fits(self.resources) >= 1:
                    break
                if time.monotonic() >= deadline:
                    raise OSError(
                        f"no free {self.wanted} on the Ray cluster at {self.address} for {self.bound:g} s"
                    )
                await anyio.sleep(POLL)
            if self._tokens:
                self._tokens.popleft()
            with anyio.CancelScope(shield=True):
                sid = await submit()
            self._mine.add(sid)
            self._live.add(sid)
            return sid

    def ended(self, sid: str) -> None:
        """The job ``sid`` is over (its resources are free again, a moment later)."""
        self._live.discard(sid)
