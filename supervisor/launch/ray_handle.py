"""``RayHandle``: one attempt's Ray job, as the executor seam's ``AttemptHandle``.

The job runs the node program (``ray_node``), whose log holds the agent's bytes and pagent's
records (``node_spec``). ``follow`` reads that log once, as it grows (``RayJobs.stream_log``: raw
bytes, never re-read from the start), splits records from the agent's bytes
(``RecordSplitter``, Ray's own preamble dropped) and hands the agent's stdout and stderr to
``on_output`` apart. The records drive the handle:

- SAMPLE: what ``sample`` returns (the node's CPU seconds, memory, process count of the tree);
  before the first one the agent has not started (``Sample.starting``: the job is pending or
  the node is still fetching its workspace), which is not a stall;
- EXIT: the agent's end, its tree already stopped by the node program: ``wait`` returns;
- RESULT: the node program's last words (marker, auto-commit, pins pushed, errors): ``finish``
  returns, ``result`` keeps them for the workspace's ``collect``.

``stop`` asks Ray to stop the job: Ray sends SIGTERM to the node program, which stops the whole
tree (TERM, the kill grace, KILL), still commits and pushes, and reports. A job stopped while
still PENDING is not cancelled by Ray: the handle stops it again once it runs, and gives up on it
once its ``not_after`` has passed (the node program then refuses to run anything). A job whose
log ends without a RESULT (its node died, the program could not start) ends the handle with the
job's own exit code and one ``[pagent]`` line saying so. When the log cannot be read (the head
does not answer), reading is retried for ``RETRY_FOR`` seconds before the handle gives up.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import signal
import time
from collections.abc import Mapping
from typing import Any

import anyio

from supervisor.launch.node_spec import NodeSpec, RecordSplitter
from supervisor.launch.ray_jobs import JobPhase, RayError, RayJobs
from supervisor.seam import Exit, OutputCallback, Sample, Stream

RETRY_FOR = 60.0  # seconds of unreadable log before the handle gives up on the job
FINISH_MARGIN = 30.0  # seconds beyond the node program's own bounds that finish waits
EXIT_SETUP = 3  # the node program's exit code when it could not prepare the workspace


def exit_of(payload: Mapping[str, Any], default: int = EXIT_SETUP) -> Exit:
    """The ``Exit`` an EXIT or RESULT record reports (``default`` when it reports none)."""
    if isinstance(payload.get("signal"), int):
        return Exit(signal=payload["signal"])
    if isinstance(payload.get("exit_code"), int):
        return Exit(code=payload["exit_code"])
    return Exit(code=default)


class RayHandle:
    """One running job (see the module docstring and ``supervisor.seam.AttemptHandle``)."""

    def __init__(
        self, jobs: RayJobs, sid: str, spec: NodeSpec, on_output: OutputCallback, *, after: float
    ) -> None:
        self._jobs = jobs
        self.ref = sid
        self.spec = spec
        self._on_output = on_output
        self._after = after  # seconds the node program may take after the agent's end
        self._splitter = RecordSplitter(spec.nonce, preamble=True)
        self._received = 0
        self._exited = anyio.Event()
        self._done = anyio.Event()
        self._stop_asked = anyio.Event()
        self._exit: Exit | None = None
        self._exit_info: Mapping[str, Any] = {}
        self._sample: Sample | None = None
        self._started = False  # the agent runs (a SAMPLE or its output came)
        self.result: dict[str, Any] | None = None
        self.node: str | None = None  # the node's host name (START)
        self.node_id: str | None = None  # Ray's id of the node the job ran on
        self.times: dict[str, float] = {"submitted": time.monotonic()}

    @property
    def pid(self) -> int | None:
        """No pid means anything on this machine."""
        return None

    @property
    def ended(self) -> bool:
        return self._done.is_set()

    # -- the log -----------------------------------------------------------------------
    async def follow(self) -> None:
        """Read the job's log to its RESULT (or its end); see the module docstring."""
        failing_since: float | None = None
        while not self._done.is_set():
            skip = self._received  # a new stream starts from the log's first byte again
            try:
                async for data in self._jobs.stream_log(self.ref, drain=self._after):
                    failing_since = None
                    chunk, skip = data[skip:], max(0, skip - len(data))
                    if chunk:
                        self._feed(chunk)
                    if self._done.is_set():
                        return
            except RayError as error:
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > RETRY_FOR:
                    self._say(f"the job's log could not be read: {error}")
                    self._end(Exit(code=1))
                    return
                await anyio.sleep(1.0)
            else:
                await self._ended_without_result()
                return

    def _feed(self, chunk: bytes) -> None:
        self._received += len(chunk)
        out, records = self._splitter.feed(chunk)
        if out:
            self._output(out, Stream.STDOUT)
        for kind, payload in records:
            if kind == "START":
                self.node = str(payload.get("node") or "") or None
                self.times["node_started"] = time.monotonic()
            elif kind == "SAMPLE":
                self._started = True
                self._sample = Sample(
                    cpu_seconds=float(payload.get("cpu") or 0.0),
                    rss=int(payload.get("rss") or 0),
                    procs=int(payload.get("procs") or 0),
                )
            elif kind == "ERR":
                with contextlib.suppress(binascii.Error, ValueError, TypeError):
                    self._output(base64.b64decode(str(payload.get("b", ""))), Stream.STDERR)
            elif kind == "EXIT" and self._exit is None:
                self._exit, self._exit_info = exit_of(payload), payload
                self.times["exited"] = time.monotonic()
                self._exited.set()
            elif kind == "RESULT":
                self.result = dict(payload)
                self.times["result"] = time.monotonic()
                self._end(
                    self._exit or exit_of(payload, 70 if payload.get("phase") == "node" else EXIT_SETUP)
                )

    def _output(self, data: bytes, stream: Stream) -> None:
        if "first_output" not in self.times:
            self.times["first_output"] = time.monotonic()
        self._started = True
        self._on_output(data, stream)

    def _say(self, text: str) -> None:
        """One line of pagent's own in the attempt's log."""
        self._on_output(f"\n[pagent] {text}\n".encode(), Stream.STDERR)

    def _end(self, exit: Exit) -> None:
        if self._exit is None:
            self._exit = exit
        self._exited.set()
        self._done.set()

    async def _ended_without_result(self) -> None:
        """The log ended before the RESULT: what the job says about its end."""
        tail = self._splitter.flush()
        if tail:
            self._output(tail, Stream.STDOUT)
        try:
            state = await self._jobs.status(self.ref)
        except RayError as error:
            self._say(f"the job's log ended without pagent's result record ({error})")
            self._end(Exit(code=1))
            return
        self._say(
            f"the job's log ended without pagent's result record (job {state.phase.value}"
            + (f": {state.message}" if state.message else "")
            + ")"
        )
        if state.phase is JobPhase.STOPPED or state.exit_code is None:
            self._end(Exit(signal=signal.SIGTERM) if self._stop_asked.is_set() else Exit(code=1))
        else:
            self._end(Exit(code=state.exit_code))

    # -- the seam ----------------------------------------------------------------------
    async def wait(self) -> Exit:
        """Return once the agent has ended (its EXIT record, or the job's end)."""
        await self._exited.wait()
        assert self._exit is not None
        return self._exit

    def exited(self) -> Exit | None:
        """The agent's exit once its EXIT record (or the job's end) came."""
        return self._exit if self._exited.is_set() else None

    async def stop(self, grace: float) -> None:
        """Ask Ray to stop the job; ``guard`` follows it up (see the module docstring). The node
        program stops the tree with the grace it was given (the same ``kill_grace``)."""
        if self._done.is_set():
            return
        self._stop_asked.set()
        with contextlib.suppress(RayError):
            await self._jobs.stop(self.ref)

    async def guard(self) -> None:
        """After a stop: stop again a job that was still PENDING then and has started since (its
        START record came after the stop); give up on one that never ran once its
        ``not_after`` passed."""
        await self._stop_asked.wait()
        asked = time.monotonic()
        stopped_again = False
        while not self._done.is_set():
            await anyio.sleep(0.5)
            started = self.times.get("node_started")
            if started is not None:
                if started >= asked and not stopped_again:
                    stopped_again = True
                    with contextlib.suppress(RayError):
                        await self._jobs.stop(self.ref)
                continue  # it runs: its RESULT, or the end of its log, ends the handle
            late = self.spec.not_after is not None and time.time() > self.spec.not_after + 5
            with contextlib.suppress(RayError):
                if late and (await self._jobs.status(self.ref)).phase is JobPhase.PENDING:
                    self._say("stopped before it ever ran (Ray starts it later; it will run nothing then)")
                    self._end(Exit(signal=signal.SIGTERM))

    async def finish(self, grace: float) -> int:
        """Wait for the node program's RESULT (its after-steps: auto-commit, push), bounded;
        return how many leftover processes the node program stopped."""
        with anyio.move_on_after(self._after + FINISH_MARGIN):
            await self._done.wait()
        if not self._done.is_set():
            await self.stop(grace)
            with anyio.move_on_after(self._after + FINISH_MARGIN):
                await self._done.wait()
            self._end(self._exit or Exit(code=1))
        info = self.result or self._exit_info
        leftovers = info.get("leftovers", 0)
        return leftovers if isinstance(leftovers, int) else 0

    def sample(self) -> Sample | None:
        """The node's latest look at the tree; ``starting`` until the agent runs."""
        if self._done.is_set():
            return None
        if not self._started:
            return Sample(0.0, 0, 0, starting=True)
        return self._sample

    async def close(self) -> None:
        """Leaving the attempt: nothing of it may run any more. Stop it if it has not ended,
        wait for that (bounded), then delete the ended job from the cluster (its log is in the
        attempt's log): the job list a restarted supervisor reads stays short."""
        if not self._done.is_set():
            await self.stop(self.spec.kill_grace)
            with anyio.move_on_after(self._after + FINISH_MARGIN):
                await self._done.wait()
        with anyio.move_on_after(10), contextlib.suppress(RayError):
            state = await self._jobs.status(self.ref)
            while not state.phase.terminal:
                await anyio.sleep(0.2)
                state = await self._jobs.status(self.ref)
            self.node_id = state.node_id
            await self._jobs.forget(self.ref)
