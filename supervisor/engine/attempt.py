"""Run one attempt to its end: launch, stream the log, watch liveness, stop, judge.

``run_attempt`` owns the attempt from launch to the moment its tree is gone. It persists the
pid as soon as the process exists and a heartbeat at every tick, and returns an
``AttemptResult``; the caller persists the outcome and decides about retries.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import anyio

from supervisor.agents.base import Outcome, OutputParser
from supervisor.agents.claude import ClaudeParser
from supervisor.agents.plain import PlainParser
from supervisor.engine import events
from supervisor.engine.watchdog import Watchdog, tick_interval
from supervisor.launch.seam import AttemptSpec, Exit, Launcher, Stream
from supervisor.plan.model import TaskSettings
from supervisor.state.records import INTERRUPTED, LAUNCH_FAILED, OOM_KILLED, STALLED, TIMEOUT
from supervisor.state.store import Store

_OUTPUT_EVENT_EVERY = 0.5  # seconds between live "last line" events per attempt
_OOM_EVENTS = Path("/sys/fs/cgroup/memory.events")


def new_parser(kind: str) -> OutputParser:
    """A fresh output parser for one attempt of an agent of ``kind``."""
    return ClaudeParser() if kind == "claude" else PlainParser()


class Clock(Protocol):
    """Time as the runner sees it; tests inject a fake one."""

    def time(self) -> float:
        """Wall-clock seconds since the epoch, for records."""

    def monotonic(self) -> float:
        """Seconds on a clock that never jumps, for limits."""

    async def sleep(self, seconds: float) -> None:
        """Sleep ``seconds``."""


@dataclass(frozen=True)
class AttemptResult:
    """How one attempt ended."""

    succeeded: bool
    reason: str
    exit: Exit | None
    metrics: dict[str, Any] = field(default_factory=dict)
    leftovers: int = 0


class _Log:
    """The attempt's log file: raw bytes of stdout and stderr in arrival order, plus the last line."""

    def __init__(self, path: Path) -> None:
        try:
            self._file: BinaryIO = open(path, "wb", buffering=0)  # noqa: SIM115 - closed in close()
        except FileNotFoundError:  # the run's first attempt makes the folder
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "wb", buffering=0)  # noqa: SIM115
        self._tail = b""
        self.last_line = ""

    def write(self, data: bytes) -> None:
        self._file.write(data)
        # Remember the last complete line (bounded) for the live view.
        cut = data.rfind(b"\n")
        if cut < 0:
            self._tail = (self._tail + data)[-512:]
            return
        head = data[:cut]
        start = head.rfind(b"\n")
        line = head[start + 1 :] if start >= 0 else self._tail + head
        text = line[-200:].decode("utf-8", "replace").strip()
        if text:
            self.last_line = text
        self._tail = data[cut + 1 :][-512:]

    def append_note(self, text: str) -> None:
        """Add a line of the supervisor's own (e.g. why it stopped the agent), marked as such."""
        self._file.write(f"\n[pagent] {text}\n".encode())

    def close(self) -> None:
        self._file.close()


def _oom_kills() -> int | None:
    """The cgroup's count of OOM kills so far, where cgroup v2 exposes it."""
    try:
        with open(_OOM_EVENTS, "rb", buffering=0) as events_file:
            text = events_file.read(4096)
        for line in text.splitlines():
            key, _, value = line.partition(b" ")
            if key == b"oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None


async def run_attempt(
    *,
    spec: AttemptSpec,
    kind: str,
    settings: TaskSettings,
    log_path: Path,
    launcher: Launcher,
    clock: Clock,
    store: Store,
    stop_requested: anyio.Event,
    emit: Callable[[events.Event], None],
) -> AttemptResult:
    """Run ``spec`` until its tree is gone; never raises for anything the agent does."""
    parser = new_parser(kind)
    log = _Log(log_path)
    watchdog = Watchdog(settings.timeout, settings.stall_timeout, started=clock.monotonic())
    last_event = 0.0
    last_output_wall: float | None = None
    result_seen = anyio.Event()
    live_status: str | None = None

    def on_output(data: bytes, stream: Stream) -> None:
        nonlocal last_event, last_output_wall, live_status
        log.write(data)
        now = clock.monotonic()
        watchdog.output(now)
        last_output_wall = clock.time()
        if stream is Stream.STDOUT:
            parser.feed(data)
            for notice in parser.notices():
                emit(events.Notice(notice, spec.task_id))
            if parser.status != live_status:
                # At once, not at the next heartbeat: a retry wait can be shorter than a tick.
                live_status = parser.status
                store.update_attempt(spec.run_id, spec.task_id, spec.attempt, note=live_status)
            if parser.finished:
                result_seen.set()
        if now - last_event >= _OUTPUT_EVENT_EVERY and log.last_line:
            last_event = now
            emit(events.Output(spec.task_id, log.last_line))

    oom_before = _oom_kills()
    verdict: str | None = None
    try:
        async with launcher.start(spec, on_output) as handle:
            store.update_attempt(
                spec.run_id, spec.task_id, spec.attempt, pid=handle.pid, pid_started=handle.pid_started
            )
            emit(events.AttemptStarted(spec.task_id, spec.attempt, handle.pid, spec.cwd))

            async def stop(reason: str) -> None:
                nonlocal verdict
                if verdict is None:
                    verdict = reason
                    log.append_note(f"stopping the agent: {reason}")
                    await handle.stop(settings.kill_grace)

            async def watch() -> None:
                tick = tick_interval(settings.timeout, settings.stall_timeout)
                previous: tuple[float, float] | None = None
                while True:
                    await clock.sleep(tick)
                    now = clock.monotonic()
                    sample = handle.sample()
                    if sample is not None:
                        watchdog.sampled(now, sample.cpu_seconds)
                        cpu_percent = None
                        if previous is not None and now > previous[0]:
                            cpu_percent = (
                                100 * max(0.0, sample.cpu_seconds - previous[1]) / (now - previous[0])
                            )
                        previous = (now, sample.cpu_seconds)
                        store.update_attempt(
                            spec.run_id,
                            spec.task_id,
                            spec.attempt,
                            cpu_percent=cpu_percent,
                            rss=sample.rss,
                            procs=sample.procs,
                            last_output_at=last_output_wall,
                            sampled_at=clock.time(),
                            note=parser.status,
                        )
                    if parser.finished:
                        continue  # only exited_late() decides now
                    if (reason := watchdog.verdict(now)) is not None:
                        await stop(reason)
                        return

            async def interrupt() -> None:
                await stop_requested.wait()
                await stop(INTERRUPTED)

            async def exited_late() -> None:
                # The agent announced its result: it has kill_grace to exit by itself.
                await result_seen.wait()
                await clock.sleep(settings.kill_grace)
                await stop("exited-late")

            async with anyio.create_task_group() as tg:
                tg.start_soon(watch)
                tg.start_soon(interrupt)
                tg.start_soon(exited_late)
                exit = await handle.wait()
                tg.cancel_scope.cancel()
            leftovers = await handle.finish(settings.kill_grace)
            if leftovers:
                log.append_note(f"stopped {leftovers} leftover process(es) of the agent")
    except OSError as exc:
        log.append_note(f"cannot start {spec.argv[0]!r}: {exc.strerror or exc}")
        log.close()
        return AttemptResult(succeeded=False, reason=LAUNCH_FAILED, exit=None)
    log.close()

    outcome: Outcome = parser.outcome(exit)
    if verdict in (TIMEOUT, STALLED, INTERRUPTED):
        return AttemptResult(False, verdict, exit, outcome.metrics, leftovers)
    if (
        verdict is None
        and exit.signal == signal.SIGKILL
        and oom_before is not None
        and (_oom_kills() or 0) > oom_before
    ):
        return AttemptResult(False, OOM_KILLED, exit, outcome.metrics, leftovers)
    return AttemptResult(outcome.succeeded, outcome.reason, exit, outcome.metrics, leftovers)
