"""The text a person reads on stdout: the end-of-run summary, ``pagent status`` and ``pagent runs``.

Pure formatting of the views (``supervisor.views``); kept apart from the event lines
(``supervisor.console``) so that the read-only commands start without structlog. Every line is
made printable (``supervisor.plan.names.printable``): reasons, notes, paths and what remotes
answered reach terminals and cron mail without a control character.
"""

from __future__ import annotations

import json
import time
from typing import Any

from supervisor.plan.names import printable
from supervisor.plan.units import format_duration
from supervisor.reasons import Reason
from supervisor.state.views import needs_person
from supervisor.ui.handoff import notification_lines, publish_lines


def format_summary(view: dict[str, Any], run_dir: str) -> str:
    """The end-of-run summary: counts, duration, failed tasks with reasons, where to look."""
    counts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in view["counts"].items())
    took = format_duration(view["duration"])
    cost = f", ${view['cost_usd']:.4f}" if view.get("cost_usd") is not None else ""
    lines = [f"run {view['run_id']} of {view['plan']}: {view['status']} in {took} ({counts}{cost})"]
    if view.get("note"):
        lines.append(f"  {view['note']}")
    if (sandbox := view.get("sandbox")) and sandbox.startswith("off"):
        lines.append(f"  sandbox {sandbox}")
    # Tasks waiting for a person come first, with what they were denied or asked.
    unfinished = [task for task in view["tasks"] if task["state"] != "succeeded"]
    unfinished.sort(key=lambda task: task["reason"] != Reason.NEEDS_INPUT)
    for task in unfinished:
        why = f" ({task['reason']})" if task["reason"] else ""
        lines.append(f"  {task['state']:<11} {task['id']}{why}  log: {task['log'] or '-'}")
        lines.extend(f"{'':<14}{line}" for line in needs_person(task))
    lines.extend(moved_ref_lines(view))
    lines.extend([*publish_lines(view), *notification_lines(view)])  # the hand-off, if any
    lines.append(f"run directory: {run_dir}")
    if any(task["state"] != "succeeded" for task in view["tasks"]):
        lines.append(f"rerun what did not succeed: pagent-run {view['plan_path']} --retry-failed")
    return "\n".join(printable(line) for line in lines)


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
    lines = ("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in table)
    return "\n".join(printable(line) for line in lines)


def format_status(view: dict[str, Any]) -> str:
    """``pagent status`` without --json: a header and one row per task."""
    header = (
        f"run {view['run_id']} of {view['plan']}: {view['status']}, "
        f"{format_duration(view['duration'])}, "
        + ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in view["counts"].items())
    )
    if view.get("note"):
        header += f"\n  {view['note']}"
    if view.get("sandbox"):
        header += f"\n  sandbox: {view['sandbox']}"
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
            lines.extend(f"    {line}" for line in task_notes(task))
    lines.extend(moved_ref_lines(view))
    lines.extend([*publish_lines(view), *notification_lines(view)])  # the hand-off, if any
    return "\n".join(printable(line).rstrip() for line in lines)


def task_notes(task: dict[str, Any]) -> list[str]:
    """What else ``pagent status`` shows under a task: MCP servers that did not start, the
    structured result (cut to a line)."""
    detail = task.get("detail") or {}
    lines = [
        f"mcp server {server.get('name')}: {server.get('status')}"
        for server in detail.get("mcp_server_errors") or []
        if isinstance(server, dict)
    ]
    if task.get("result") is not None:
        text = json.dumps(task["result"], ensure_ascii=False)
        lines.append(f"result: {text[:200]}{'…' if len(text) > 200 else ''}")
    return lines


def moved_ref_lines(view: dict[str, Any]) -> list[str]:
    """Branches and tags that changed while an attempt ran, other than the run's own ("refs
    changed by others:" and one line each); nothing when none did."""
    moved = view.get("moved_refs") or []
    if not moved:
        return []
    lines = ["refs changed while agents ran (not pagent's own):"]
    for change in moved:
        before, after = change.get("before"), change.get("after")
        if before is None:
            how = f"created at {str(after)[:12]}"
        elif after is None:
            how = f"deleted (was {str(before)[:12]})"
        else:
            how = f"moved {str(before)[:12]} -> {str(after)[:12]}"
        lines.append(
            f"  {change.get('ref')}  {how}  (during {change.get('task')}, attempt {change.get('attempt')})"
        )
    return lines
