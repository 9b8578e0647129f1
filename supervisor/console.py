"""Everything ``pagent-run`` shows a person: event lines, the summary and the status table.

Event lines go through structlog to stderr: readable key=value lines (coloured only on a
terminal), or JSON lines with ``--log-format json``. The summary and tables go to stdout.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

import structlog

from supervisor import events
from supervisor.claude import NEEDS_INPUT
from supervisor.units import format_duration
from supervisor.views import needs_person


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
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="%H:%M:%S" if fmt != "json" else "iso", utc=fmt == "json"),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(file=target),
        cache_logger_on_first_use=False,
    )


class EventPrinter:
    """Turns runner events into one log line each (nothing at all when ``quiet``)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.log = structlog.get_logger("pagent")

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
                self.log.info("wave started", wave=event.name, tasks=event.tasks)
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


def format_summary(view: dict[str, Any], run_dir: str) -> str:
    """The end-of-run summary: counts, duration, failed tasks with reasons, where to look."""
    counts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in view["counts"].items())
    took = format_duration(view["duration"])
    cost = f", ${view['cost_usd']:.4f}" if view.get("cost_usd") is not None else ""
    lines = [f"run {view['run_id']} of {view['plan']}: {view['status']} in {took} ({counts}{cost})"]
    if view.get("note"):
        lines.append(f"  {view['note']}")
    # Tasks waiting for a person come first, with what they were denied or asked.
    unfinished = [task for task in view["tasks"] if task["state"] != "succeeded"]
    unfinished.sort(key=lambda task: task["reason"] != NEEDS_INPUT)
    for task in unfinished:
        why = f" ({task['reason']})" if task["reason"] else ""
        lines.append(f"  {task['state']:<11} {task['id']}{why}  log: {task['log'] or '-'}")
        lines.extend(f"{'':<14}{line}" for line in needs_person(task))
    lines.append(f"run directory: {run_dir}")
    if any(task["state"] != "succeeded" for task in view["tasks"]):
        lines.append(f"rerun what did not succeed: pagent-run {view['plan_path']} --retry-failed")
    return "\n".join(lines)


def format_runs(rows: list[dict[str, Any]]) -> str:
    """``pagent runs``: one line per run, oldest first."""
    table = [("RUN", "STARTED", "TOOK", "STATUS", "TASKS", "COST")]
    for row in rows:
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(row["started_at"]))
        took = "-" if row["duration"] is None else format_duration(row["duration"])
        counts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in row["counts"].items())
        cost = "-" if row["cost_usd"] is None else f"${row['cost_usd']:.4f}"
        table.append((row["run_id"], started, took, row["status"], counts, cost))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table)


def format_status(view: dict[str, Any]) -> str:
    """``pagent status`` without --json: a header and one row per task."""
    header = (
        f"run {view['run_id']} of {view['plan']}: {view['status']}, "
        f"{format_duration(view['duration'])}, "
        + ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in view["counts"].items())
    )
    if view.get("note"):
        header += f"\n  {view['note']}"
    rows = [("TASK", "WAVE", "STATE", "ATT", "REASON", "BRANCH", "DETAIL")]
    for task in view["tasks"]:
        detail = ""
        if live := task.get("live"):
            parts = []
            if live["cpu_percent"] is not None:
                parts.append(f"cpu {live['cpu_percent']}%")
            if live["rss"] is not None:
                parts.append(f"rss {live['rss'] // 2**20}M")
            if live["procs"] is not None:
                parts.append(f"{live['procs']} procs")
            if live["since_output"] is not None:
                parts.append(f"quiet {live['since_output']}s")
            if live["status"]:
                parts.append(live["status"])
            detail = ", ".join(parts)
        elif task["duration"] is not None:
            detail = format_duration(task["duration"])
        rows.append(
            (
                task["id"],
                task["wave"],
                task["state"],
                str(task["attempts"]),
                task["reason"] or "",
                task["branch"] or "-",
                detail,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = [header]
    for row, task in zip(rows, [None, *view["tasks"]], strict=True):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1])
        if task is not None:
            lines.extend(f"    {line}" for line in needs_person(task))
    return "\n".join(line.rstrip() for line in lines)
