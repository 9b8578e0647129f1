"""Run one attempt to its end: launch, stream the log, watch liveness, stop, judge.

``run_attempt`` owns the attempt from launch to the moment its tree is gone. It records the
executor's reference as soon as the attempt exists and a heartbeat at every tick (through an
``AttemptRecorder``: the run state writes them), and returns an ``AttemptResult``; the caller
applies the checks, persists the outcome and decides about retries. ``run_verify`` runs a task's
``verify`` command the same way, its output appended to the attempt's log.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
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
from supervisor.seam import AttemptSpec, Executor, Exit, Stream

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
    last_output_wall: float | None = None
    result_seen = anyio.Event()
    live_status: str | None = None
    announced: Waiting | None = None  # the agent's latest announced wait, as the watchdog has it

    def on_output(data: bytes, stream: Stream) -> None:
        nonlocal last_event, last_output_wall, live_status, announced
        log.write(data)
        now = clock.monotonic()
        watchdog.output(now)
        last_output_wall = clock.time()
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
        if parser.finished and not result_seen.is_set():
            result_seen.set()
            for start in helpers:
                start()
        if now - last_event >= _OUTPUT_EVENT_EVERY and log.last_line:
            last_event = now
            emit(events.Output(spec.task_id, log.last_line))

    verdict: str | None = None
    waited: Waiting | None = None  # what the agent was waiting for when it was stopped
    helpers: list[Callable[[], object]] = []  # starts exited_late, while the attempt's tasks run
    try:
        async with executor.start(spec, on_output) as handle:
            recorder.running(handle.ref, handle.pid)
            emit(events.AttemptStarted(spec.task_id, spec.attempt, handle.pid, spec.cwd or Path()))

            async def stop(reason: str) -> None:
                nonlocal verdict, waited
                if verdict is None:
                    verdict, waited = reason, parser.waiting
                    log.note(f"stopping the agent: {reason}")
                    await handle.stop(settings.kill_grace)

            async def watch() -> None:
                tick = tick_interval(settings.timeout, settings.stall_timeout)
                previous: tuple[float, float] | None = None
                while True:
                    await clock.sleep(tick)
                    now = clock.monotonic()
                    sample = handle.sample()
                    if sample is not None:
                        if sample.starting:  # not the agent's silence: it has not started yet
                            watchdog.output(now)
                        watchdog.sampled(now, sample.cpu_seconds)
                        cpu_percent = None
                        if previous is not None and now > previous[0]:
                            cpu_percent = (
                                100 * max(0.0, sample.cpu_seconds - previous[1]) / (now - previous[0])
                            )
                        previous = (now, sample.cpu_seconds)
                        recorder.heartbeat(
                            cpu_percent=cpu_percent,
                            rss=sample.rss,
                            procs=sample.procs,
                            last_output_at=last_output_wall,
                            sampled_at=clock.time(),
                            note=parser.status,
                        )
                    if log.failure is not None:  # the log cannot be written (a full disk): stop
                        await stop(log.failure)
                        return
                    if parser.finished:
                        continue  # only exited_late() decides now
                    if (reason := watchdog.verdict(now)) is not None:
                        await stop(reason)
                        return

            async def exited_late() -> None:
                # The agent announced its result: it has kill_grace to exit by itself.
                await clock.sleep(settings.kill_grace)
                await stop(_EXITED_LATE)

            # Only the watch is a task from the start: the stop for a stop request and the one
            # for an agent that announced its result but does not exit are started when they
            # are due (each task an attempt starts costs the loop as much as its record). An
            # agent that has already exited by now (a quick one: its record was being written)
            # needs neither: there is nothing left to watch or to stop.
            if handle.exited() is not None and not stop_requested.requested:
                exit = await handle.wait()
            else:
                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(watch)
                        helpers.append(lambda: tg.start_soon(exited_late))
                        if result_seen.is_set():
                            tg.start_soon(exited_late)
                        with stop_requested.on_request(lambda: tg.start_soon(stop, Reason.INTERRUPTED.value)):
                            exit = await handle.wait()
                        tg.cancel_scope.cancel()
                finally:
                    helpers.clear()  # output after the exit starts nothing (its task group ended)
            leftovers = await handle.finish(settings.kill_grace)
            if leftovers:
                log.note(f"stopped {leftovers} leftover process(es) of the agent")
    except OSError as exc:
        log.note(f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}")
        return AttemptResult(succeeded=False, reason=Reason.LAUNCH_FAILED.value, exit=None)

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
