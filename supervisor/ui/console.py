"""The event lines of a run: what ``pagent-run`` says while it works.

Event lines go through structlog to stderr: readable key=value lines (coloured only on a
terminal), or JSON lines with ``--log-format json``. The summary and tables that go to stdout
are in ``supervisor.tables``. structlog (with the rich and attrs it brings, a fifth of a run's
start) is imported only by what prints a line: a ``--quiet`` run never imports it.

Every value of an event line is made printable first (``supervisor.plan.names.printable``):
whatever an agent or a plan wrote (a reason, a notice quoting the agent, a wave name) cannot
bring an escape sequence to the terminal or to cron's mail, and every event stays one line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import TYPE_CHECKING, Any, TextIO

from supervisor.engine import events
from supervisor.plan.names import printable
from supervisor.plan.units import format_duration

if TYPE_CHECKING:
    from structlog.typing import FilteringBoundLogger


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time, so a live view can redirect it."""

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


def configure_logging(fmt: str, stream: TextIO | None = None) -> None:
    """Set structlog up once for this process: ``fmt`` is "text" or "json".

    Colours only when the stream is a terminal: under cron, or with output to a file, the lines
    carry no escape sequence at all.
    """
    import structlog  # noqa: PLC0415 - a quiet run never pays for it

    target: Any = stream or _CurrentStderr()
    renderer: Any
    if fmt == "json":
        renderer = structlog.processors.JSONRenderer()
    else:
        colors = target.isatty()
        renderer = structlog.dev.ConsoleRenderer(
            colors=colors, sort_keys=False, pad_event_to=0 if not colors else 20
        )
    structlog.configure(
        processors=[
            _printable,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S" if fmt != "json" else "iso", utc=fmt == "json"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=target),
        cache_logger_on_first_use=False,
    )


def _printable(logger: object, method: str, event: MutableMapping[str, Any]) -> Mapping[str, Any]:
    """A structlog processor: every text value of the line without control characters."""
    return {key: printable(value) if isinstance(value, str) else value for key, value in event.items()}


class EventPrinter:
    """Turns runner events into one log line each (nothing at all when ``quiet``, and then
    without importing structlog)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self._log: FilteringBoundLogger | None = None

    @property
    def log(self) -> FilteringBoundLogger:
        """The logger, made on first use: a quiet printer never needs one."""
        if self._log is None:
            import structlog  # noqa: PLC0415 - a quiet printer never pays for it

            self._log = structlog.get_logger("pagent")
        return self._log

    def __call__(self, event: events.Event) -> None:
        if self.quiet or isinstance(event, events.Output | events.CostUpdate):
            return
        match event:
            case events.RunStarted():
                verb = "retrying failed tasks of run" if event.retry else "run started"
                self.log.info(
                    verb, run=event.run_id, plan=event.plan_name, tasks=event.tasks, dir=str(event.run_dir)
                )
            case events.WaveStarted():
                self.log.info("wave started", wave=event.name, tasks=event.tasks, **_expected(event))
            case events.AttemptStarted():
                self.log.info("task started", task=event.task_id, attempt=event.attempt, pid=event.pid)
            case events.AttemptFailed() if event.retry_in is not None:
                self.log.warning(
                    "attempt failed, retrying",
                    task=event.task_id,
                    attempt=event.attempt,
                    reason=event.reason,
                    retry_in=f"{event.retry_in:.1f}s",
                )
            case events.AttemptFailed():
                pass  # the TaskFinished that follows says it
            case events.TaskFinished():
                level = "info" if event.state == "succeeded" else "error"
                fields: dict[str, Any] = {"task": event.task_id, "attempts": event.attempts}
                if event.state != "succeeded" and event.reason:
                    fields["reason"] = event.reason
                if event.duration is not None:
                    fields["took"] = format_duration(event.duration)
                getattr(self.log, level)(f"task {event.state.replace('_', ' ')}", **fields)
            case events.Notice():
                self.log.warning(event.message, **({"task": event.task_id} if event.task_id else {}))
            case events.StoppedEarly():
                pass  # the Notice emitted with it says it
            case events.Published():
                self._published(event)
            case events.Notified() if event.ok:
                self.log.info("notified", notify=event.event, target=event.target)
            case events.Notified():
                tries = f"{event.tries} {'try' if event.tries == 1 else 'tries'}"
                self.log.warning(
                    "notification failed",
                    notify=event.event,
                    target=event.target,
                    error=event.error,
                    tries=tries,
                )

    def _published(self, event: events.Published) -> None:
        """One line per published branch: warning when the push or the pull request failed."""
        fields: dict[str, Any] = {"task": event.task_id} if event.task_id else {"integration": True}
        fields.update(branch=event.branch, push=event.push)
        if event.detail:
            fields["detail"] = event.detail
        if event.pull_request:
            fields["pull_request"] = event.pull_request
        if event.pr_problem:
            fields["pull_request_problem"] = event.pr_problem
        ok = event.push in {"pushed", "up-to-date"} and not event.pr_problem
        getattr(self.log, "info" if ok else "warning")("published" if ok else "publish incomplete", **fields)


def _expected(event: events.WaveStarted) -> dict[str, Any]:
    """The wave's expected duration from earlier runs (a lower bound with tasks that have none)."""
    if event.expected is None:
        return {}
    if not event.unknown:
        return {"expected": format_duration(event.expected)}
    return {"expected": ">=" + format_duration(event.expected), "without_history": event.unknown}
