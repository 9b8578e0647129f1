"""Run one attempt to its end: launch, stream the log, watch liveness, stop, judge.

``run_attempt`` owns the attempt from launch to the moment its tree is gone. It records the
executor's reference as soon as the attempt exists and a heartbeat at every tick (through an
``AttemptRecorder``: the run state writes them), and returns an ``AttemptResult``; the caller
applies the checks, persists the outcome and decides about retries. ``run_verify`` runs a task's
``verify`` command the same way, its output appended to the attempt's log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any, Protocol

import anyio

from supervisor.agents.base import Outcome, OutputParser, Waiting
from supervisor.engine import events
from supervisor.engine.clock import Clock
from supervisor.engine.gate import Stop
from supervisor.engine.logfile import LogFile
from supervisor.engine.watchdog import Watchdog, tick_interval
from supervisor.plan.model import TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import AttemptHandle, AttemptSpec, Executor, Exit, Stream

_OUTPUT_EVENT_EVERY = 0.5  # seconds between live "last line" events per attempt
_EXITED_LATE = "exited-late"  # a stop after the agent announced its result: its outcome stands


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt ended."""

    succeeded: bool
    reason: str
    exit: Exit | None
    metrics: dict[str, Any] = field(default_factory=dict)
    leftovers: int = 0


class AttemptRecorder(Protocol):
    """Where a running attempt's facts go (the run state, bound to one attempt)."""

    def running(self, ref: str, pid: int | None) -> None:
        """The attempt exists: its executor reference."""

    def heartbeat(self, **sample: Any) -> None:
        """A liveness sample or a live note."""


class _Watch:
    """What may stop a running attempt -- its liveness ticks, the grace of an agent that
    announced its result, a stop request -- as timer callbacks on the clock, not tasks.

    An attempt's tasks and their cancellation at its end were most of what a quick attempt cost
    the event loop (a cancelled task also leaves its frames in a reference cycle, holding the
    attempt's objects until the cyclic collector comes round). A tick samples the tree, writes
    the heartbeat and asks the watchdog; only a stop that is due starts a task (``_stopping``),
    which sends the signals and is cancelled if the agent exits first, as before. The owner
    awaits ``wait`` and then ``end``.
    """

    def __init__(
        self,
        clock: Clock,
        *,
        settings: TaskSettings,
        watchdog: Watchdog,
        parser: OutputParser,
        log: LogFile,
        recorder: AttemptRecorder,
    ) -> None:
        self._handle: AttemptHandle | None = None
        self._clock = clock
        self._settings = settings
        self._watchdog = watchdog
        self._parser = parser
        self._log = log
        self._recorder = recorder
        self._tick = tick_interval(settings.timeout, settings.stall_timeout)
        self._previous: tuple[float, float] | None = None  # the latest sample: (time, CPU seconds)
        self._cancels: dict[str, Callable[[], object]] = {}  # the timers set: tick, exited-late
        self._stopping: asyncio.Task[None] | None = None
        self._owner: asyncio.Task[object] | None = None
        self._failure: BaseException | None = None  # what the stop raised (raised by ``wait``)
        self.last_output_wall: float | None = None
        self.verdict: str | None = None  # why it was stopped (None: it was not)
        self.waited: Waiting | None = None  # what the agent was waiting for when it was stopped

    def forget(self) -> None:
        """The attempt is over: let go of its handle."""
        self._handle = None
        self._owner = None

    def begin(self, handle: AttemptHandle, result_seen: bool) -> None:
        """Watch ``handle`` from now: set the first tick (and the exited-late timer, if the
        result came already)."""
        self._handle = handle
        self._owner = asyncio.current_task()
        self._cancels["tick"] = self._clock.call_later(self._tick, self._on_tick)
        if result_seen:
            self.result_seen()

    def result_seen(self) -> None:
        """The agent announced its result: it has ``kill_grace`` to exit by itself."""
        if self._owner is not None and "late" not in self._cancels:
            late = partial(self.stop, _EXITED_LATE)
            self._cancels["late"] = self._clock.call_later(self._settings.kill_grace, late)

    def _on_tick(self) -> None:
        self._cancels.pop("tick", None)
        if self.verdict is not None or self._handle is None:
            return
        try:
            self._sample_and_judge(self._handle)
        except Exception as exc:  # a callback has nobody to raise to: the owner raises it
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        """Have the owner's ``wait`` raise ``exc`` (the first one) instead of waiting on."""
        if self._failure is None:
            self._failure = exc
        if self._owner is not None:
            self._owner.cancel()

    def _sample_and_judge(self, handle: AttemptHandle) -> None:
        clock, watchdog = self._clock, self._watchdog
        now = clock.monotonic()
        sample = handle.sample()
        if sample is not None:
            if sample.starting:  # not the agent's silence: it has not started yet
                watchdog.output(now)
            watchdog.sampled(now, sample.cpu_seconds)
            cpu_percent = None
            previous = self._previous
            if previous is not None and now > previous[0]:
                cpu_percent = 100 * max(0.0, sample.cpu_seconds - previous[1]) / (now - previous[0])
            self._previous = (now, sample.cpu_seconds)
            self._recorder.heartbeat(
                cpu_percent=cpu_percent,
                rss=sample.rss,
                procs=sample.procs,
                last_output_at=self.last_output_wall,
                sampled_at=clock.time(),
                note=self._parser.status,
            )
        if self._log.failure is not None:  # the log cannot be written (a full disk): stop
            self.stop(self._log.failure)
            return
        # Once the agent announced its result, only the exited-late timer decides.
        if not self._parser.finished and (reason := watchdog.verdict(now)) is not None:
            self.stop(reason)
            return
        self._cancels["tick"] = clock.call_later(self._tick, self._on_tick)

    def stop(self, reason: str) -> None:
        """Stop the agent for ``reason`` (the first reason given is the verdict)."""
        if self.verdict is not None or self._owner is None or self._handle is None:
            return
        self.verdict, self.waited = reason, self._parser.waiting
        self._log.note(f"stopping the agent: {reason}")
        self._stopping = asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        assert self._handle is not None
        try:
            await self._handle.stop(self._settings.kill_grace)
        except Exception as exc:  # the attempt's owner raises it (its wait might never end)
            # Not as the OSError it may be: that would read as the launch's failure.
            self._fail(RuntimeError(f"stopping the agent failed: {exc!r}"))

    async def wait(self) -> Exit:
        """The handle's ``wait``; what a stop raised, raised here."""
        assert self._handle is not None
        try:
            return await self._handle.wait()
        except asyncio.CancelledError:
            if self._failure is None or self._owner is None:
                raise
            self._owner.uncancel()
            raise self._failure from None

    async def end(self) -> None:
        """No more timers; a stop still under way (the agent exited first) is cancelled."""
        for cancel in self._cancels.values():
            cancel()
        self._cancels.clear()
        self._owner = None  # output after the exit starts nothing
        stopping = self._stopping
        if stopping is not None and not stopping.done():
            stopping.cancel()
            with anyio.CancelScope(shield=True):
                await asyncio.wait({stopping})


async def run_attempt(
    *,
    spec: AttemptSpec,
    parser: OutputParser,
    settings: TaskSettings,
    log: LogFile,
    executor: Executor,
    clock: Clock,
    recorder: AttemptRecorder,
    stop_requested: Stop,
    emit: Callable[[events.Event], None],
) -> AttemptResult:
    """Run ``spec`` until its tree is gone; never raises for anything the agent does."""
    watchdog = Watchdog(settings.timeout, settings.stall_timeout, started=clock.monotonic())
    last_event = 0.0
    result_seen = False
    live_status: str | None = None
    announced: Waiting | None = None  # the agent's latest announced wait, as the watchdog has it
    watch = _Watch(clock, settings=settings, watchdog=watchdog, parser=parser, log=log, recorder=recorder)

    def on_output(data: bytes, stream: Stream) -> None:
        nonlocal last_event, live_status, announced, result_seen
        log.write(data)
        now = clock.monotonic()
        watchdog.output(now)
        watch.last_output_wall = clock.time()
        if stream is Stream.STDOUT:
            parser.feed(data)
        else:  # some CLIs report API retries or refused edits only on stderr
            parser.feed_stderr(data)
        if parser.waiting is not announced:
            announced = parser.waiting
            watchdog.quiet(now, announced.seconds if announced is not None else None)
        for notice in parser.notices():
            emit(events.Notice(notice, spec.task_id))
        if parser.status != live_status:
            # At once, not at the next heartbeat: a retry wait can be shorter than a tick.
            live_status = parser.status
            recorder.heartbeat(note=live_status)
        if parser.finished and not result_seen:
            result_seen = True
            watch.result_seen()
        if now - last_event >= _OUTPUT_EVENT_EVERY and log.last_line:
            last_event = now
            emit(events.Output(spec.task_id, log.last_line))

    try:
        async with executor.start(spec, on_output) as handle:
            recorder.running(handle.ref, handle.pid)
            emit(events.AttemptStarted(spec.task_id, spec.attempt, handle.pid, spec.cwd or Path()))
            # An agent that has already exited by now (a quick one: its record was being
            # written) needs no watch: there is nothing left to watch or to stop.
            if handle.exited() is not None and not stop_requested.requested:
                exit = await handle.wait()
            else:
                watch.begin(handle, result_seen)
                try:
                    with stop_requested.on_request(lambda: watch.stop(Reason.INTERRUPTED.value)):
                        exit = await watch.wait()
                finally:
                    await watch.end()
            leftovers = await handle.finish(settings.kill_grace)
            if leftovers:
                log.note(f"stopped {leftovers} leftover process(es) of the agent")
    except OSError as exc:
        log.note(f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}")
        return AttemptResult(succeeded=False, reason=Reason.LAUNCH_FAILED.value, exit=None)

    finally:
        # The handle's pipes hold on_output, whose closure holds the watch: without the handle,
        # no reference cycle keeps the attempt's objects for the cyclic collector.
        watch.forget()

    verdict, waited = watch.verdict, watch.waited
    outcome: Outcome = parser.outcome(exit)
    if verdict in (Reason.TIMEOUT, Reason.STALLED) and waited is not None and waited.reason is not None:
        # Stopped while waiting out what it announced (an API retry after a 429): that is the
        # failure, and its policy applies (rate-limited: retried later, not counted).
        log.note(f"it was waiting out an announced retry: {waited.reason}")
        return AttemptResult(False, waited.reason, exit, outcome.metrics, leftovers)
    if verdict in (Reason.TIMEOUT, Reason.STALLED, Reason.INTERRUPTED):
        return AttemptResult(False, verdict, exit, outcome.metrics, leftovers)
    if verdict is None and exit.oom:
        return AttemptResult(False, Reason.OOM_KILLED.value, exit, outcome.metrics, leftovers)
    return AttemptResult(outcome.succeeded, outcome.reason, exit, outcome.metrics, leftovers)


async def run_verify(
    *,
    argv: Sequence[str],
    spec: AttemptSpec,
    settings: TaskSettings,
    log: LogFile,
    executor: Executor,
) -> int:
    """Run the task's ``verify`` command like an attempt (own tree, ``timeout``) where the
    attempt ran, its output appended to the attempt's log; return its exit code. A command that
    cannot start counts as 127, one stopped at its timeout as 124."""
    # The same place, environment and confinement as the attempt: it runs what the agent wrote.
    verify_spec = replace(spec, argv=tuple(argv), prompt_file=None, verify=True)
    log.note(f"verify: {' '.join(argv)}")

    def on_output(data: bytes, stream: Stream) -> None:
        log.write(data)

    try:
        async with executor.start(verify_spec, on_output) as handle:
            with anyio.move_on_after(settings.timeout) as scope:
                exit = await handle.wait()
            if scope.cancelled_caught:
                await handle.stop(settings.kill_grace)
                await handle.wait()
                log.note("verify: timed out")
                return 124
            await handle.finish(settings.kill_grace)
    except OSError as exc:
        log.note(f"verify: cannot start: {exc.strerror or exc}")
        return 127
    code = exit.code if exit.code is not None else 128 + (exit.signal or 0)
    log.note(f"verify: exit {code}")
    return code
