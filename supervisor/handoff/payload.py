"""The notification payload: one versioned JSON object per event, plus a phone-sized title and body.

Every payload is built from the run view that ``pagent status --json`` prints (``views.run_view``)
and reuses its field names, so a script that reads one reads the other. Schema
``pagent.notification/1``; fields are only ever added within a version:

- ``schema``, ``event`` (``run-finished``, ``needs-input``, ``stopped-early``, ``task-failed``,
  ``test``), ``level`` (``success``, ``info``, ``warning``, ``failure``), ``title``, ``body`` (what
  apprise targets show), ``created_at`` (epoch seconds);
- ``run``: ``run_id``, ``plan``, ``plan_path``, ``status``, ``exit_code``, ``started_at``,
  ``ended_at``, ``duration``, ``counts``, ``cost_usd``, ``note`` as in the run view; ``report``
  (the path of ``report.html``, or null); ``integration`` (``branch`` and, once published,
  ``publish``; null without ``[integrate]``);
- ``run-finished``: ``failed`` (every task that did not succeed, those needing a person first)
  and ``published`` (every task with a ``publish`` record: its branch push and pull request);
- ``needs-input`` and ``task-failed``: ``task``;
- ``stopped-early``: ``stop`` = ``{"reason": "auth" | "billing" | "usage-limit" | "max-cost",
  "detail": str | null}``.

A task entry has the task view's ``id``, ``wave``, ``state``, ``attempts``, ``exit_code``,
``reason``, ``branch``, ``log``, ``duration``, ``total_cost_usd``, ``diff``, ``publish``, ``result``
(the latest attempt's structured result, ``result_schema``) and ``answer`` (a person's answer to
it, ``pagent answer``) where present, plus ``needs_person`` (``views.needs_person``: the result's
question first, then one line per denied tool call or question) and, for ``needs-input``,
``permission_denials`` as the agent reported them.
"""

from __future__ import annotations

import enum
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.plan.model import CONFIGURABLE_EVENTS, DEFAULT_EVENTS, NotifyEvent
from supervisor.plan.units import format_duration
from supervisor.state.views import needs_person

SCHEMA = "pagent.notification/1"


Event = NotifyEvent  # the plan names the events (``[notify] on``); the payload carries them


class Level(enum.StrEnum):
    """How a notification should look on the target (apprise's notify types)."""

    SUCCESS = "success"
    INFO = "info"
    WARNING = "warning"
    FAILURE = "failure"


CONFIGURABLE = CONFIGURABLE_EVENTS
__all__ = ["CONFIGURABLE", "DEFAULT_EVENTS", "SCHEMA", "STOP_REASONS", "Event", "Level", "Notification"]
STOP_REASONS = ("auth", "billing", "usage-limit", "max-cost")

_RUN_FIELDS = (
    "run_id",
    "plan",
    "plan_path",
    "status",
    "exit_code",
    "started_at",
    "ended_at",
    "duration",
    "counts",
    "cost_usd",
    "note",
)
_TASK_FIELDS = (
    "id",
    "wave",
    "state",
    "attempts",
    "exit_code",
    "reason",
    "branch",
    "log",
    "duration",
    "total_cost_usd",
    "diff",
    "publish",
    "result",
    "answer",
)
_MAX_LINES = 6  # a phone shows a few lines before "more"
_MAX_LINE = 160
_MAX_NAMES = 3


@dataclass(frozen=True)
class Notification:
    """One notification: the JSON payload for machines, title and body for people."""

    event: Event
    level: Level
    title: str
    body: str
    payload: Mapping[str, Any]

    def to_json(self) -> str:
        """The payload as one line of JSON (what a ``command`` target reads on stdin)."""
        return json.dumps(self.payload, separators=(",", ":"), default=str)


def run_finished(
    view: Mapping[str, Any], report: str | Path | None = None, now: float | None = None
) -> Notification:
    """The run is over: counts, cost, what did not succeed and why, what was published."""
    tasks = list(view.get("tasks") or [])
    failed = [t for t in tasks if t.get("state") != "succeeded"]
    failed.sort(key=lambda t: t.get("reason") != "needs-input")  # stable: plan order otherwise
    published = [t for t in tasks if t.get("publish")]
    total, succeeded = len(tasks), len(tasks) - len(failed)
    plan = view.get("plan", "?")
    if not failed:
        title = f"pagent {plan}: all {total} succeeded" if total != 1 else f"pagent {plan}: succeeded"
    else:
        title = f"pagent {plan}: {succeeded} of {total} succeeded"
    lines = []
    if failed:
        lines.append(f"{len(failed)} not done: {_names(failed)}")
    if view.get("note"):
        lines.append(str(view["note"]))
    lines.append(_figures(view))
    urls = [(t["id"], _pr_url(t)) for t in published if _pr_url(t)]
    lines.extend(f"PR {task_id}: {url}" for task_id, url in urls[:2])
    if len(urls) > 2:
        lines.append(f"+{len(urls) - 2} more pull requests")
    if report is not None:
        lines.append(f"report: {report}")
    extra = {
        "failed": [_task(t) for t in failed],
        "published": [{"id": t["id"], "branch": t.get("branch"), "publish": t["publish"]} for t in published],
    }
    level = Level.SUCCESS if not failed and view.get("status") == "succeeded" else Level.FAILURE
    return _build(Event.RUN_FINISHED, level, title, lines, view=view, report=report, extra=extra, now=now)


def needs_input(view: Mapping[str, Any], task_id: str, now: float | None = None) -> Notification:
    """A task ended ``needs-input``: the denied tool calls (or the question) a person must see."""
    task = _find(view, task_id)
    asks = needs_person(dict(task))
    lines = [*asks[:3], *([f"+{len(asks) - 3} more"] if len(asks) > 3 else [])]
    lines.append(f"branch {task.get('branch')}; log: {task.get('log')}")
    entry = _task(task)
    entry["permission_denials"] = (task.get("detail") or {}).get("permission_denials") or []
    title = f"pagent {view.get('plan', '?')}: {task_id} needs you"
    return _build(Event.NEEDS_INPUT, Level.WARNING, title, lines, view=view, extra={"task": entry}, now=now)


def stopped_early(
    view: Mapping[str, Any], reason: str, detail: str | None = None, now: float | None = None
) -> Notification:
    """The night stopped launching tasks: ``reason`` is one of ``STOP_REASONS``; ``detail`` says
    more (the run's note, by default)."""
    detail = detail if detail is not None else view.get("note")
    lines = [str(detail)] if detail else []
    lines.append(_figures(view))
    lines.append(f"rerun: pagent-run {view.get('plan_path', 'PLAN')} --retry-failed")
    title = f"pagent {view.get('plan', '?')}: stopped early ({reason})"
    stop = {"reason": reason, "detail": detail}
    return _build(Event.STOPPED_EARLY, Level.FAILURE, title, lines, view=view, extra={"stop": stop}, now=now)


def task_failed(view: Mapping[str, Any], task_id: str, now: float | None = None) -> Notification:
    """A task failed for good (no retry left)."""
    task = _find(view, task_id)
    reasons = [str(h.get("reason")) for h in task.get("history") or []]
    lines = [f"{task.get('attempts')} attempts: {', '.join(reasons[-4:]) or task.get('reason')}"]
    lines.append(f"log: {task.get('log')}")
    title = f"pagent {view.get('plan', '?')}: {task_id} failed ({task.get('reason')})"
    extra = {"task": _task(task)}
    return _build(Event.TASK_FAILED, Level.FAILURE, title, lines, view=view, extra=extra, now=now)


def check_message(plan: str, now: float | None = None) -> Notification:
    """What ``pagent notify --test`` sends: proves every target is reachable, says nothing else."""
    view = {"plan": plan}
    title = f"pagent {plan}: test notification"
    lines = ["If you read this, pagent can reach you."]
    return _build(Event.TEST, Level.INFO, title, lines, view=view, now=now)


def _build(
    event: Event,
    level: Level,
    title: str,
    lines: list[str],
    *,
    view: Mapping[str, Any],
    report: str | Path | None = None,
    extra: Mapping[str, Any] | None = None,
    now: float | None = None,
) -> Notification:
    """Assemble the payload (common fields first) and the trimmed title and body."""
    title = _line(title)
    body = "\n".join(_line(line) for line in lines[:_MAX_LINES])
    run: dict[str, Any] = {key: view.get(key) for key in _RUN_FIELDS}
    run["report"] = None if report is None else str(report)
    integration = view.get("integration")
    run["integration"] = (
        {"branch": integration.get("branch"), "publish": integration.get("publish")}
        if isinstance(integration, Mapping)
        else None
    )
    payload = {
        "schema": SCHEMA,
        "event": event.value,
        "level": level.value,
        "title": title,
        "body": body,
        "created_at": round(time.time() if now is None else now, 3),
        "run": run,
        **(extra or {}),
    }
    return Notification(event, level, title, body, payload)


def _task(task: Mapping[str, Any]) -> dict[str, Any]:
    """A task entry: the task view's own field names, plus what a person must look at."""
    entry = {key: task.get(key) for key in _TASK_FIELDS if key in task}
    entry["needs_person"] = needs_person(dict(task))
    return entry


def _find(view: Mapping[str, Any], task_id: str) -> Mapping[str, Any]:
    """The view of task ``task_id``; ``KeyError`` if the run has none (a caller's mistake)."""
    for task in view.get("tasks") or []:
        if task.get("id") == task_id:
            return dict(task)
    raise KeyError(f"run {view.get('run_id')} has no task {task_id!r}")


def _names(tasks: list[Mapping[str, Any]]) -> str:
    """'a (verify), b (needs-input) +2 more': the first few tasks and why, for one line."""
    shown = [f"{t['id']} ({t.get('reason') or t.get('state')})" for t in tasks]
    more = f" +{len(shown) - _MAX_NAMES} more" if len(shown) > _MAX_NAMES else ""
    return ", ".join(shown[:_MAX_NAMES]) + more


def _figures(view: Mapping[str, Any]) -> str:
    """'$4.21 · 3h02m · run 20261124-...': what the night cost, how long it took, which run."""
    parts = []
    if view.get("cost_usd") is not None:
        parts.append(f"${view['cost_usd']:.2f}")
    if view.get("duration") is not None:
        parts.append(format_duration(float(view["duration"])))
    parts.append(f"run {view.get('run_id')}")
    return " · ".join(parts)


def _pr_url(task: Mapping[str, Any]) -> str | None:
    """The pull request URL recorded for a task, if any."""
    pull = (task.get("publish") or {}).get("pull_request") or {}
    url = pull.get("url") if isinstance(pull, Mapping) else None
    return str(url) if url else None


def _line(text: str) -> str:
    """One line of at most ``_MAX_LINE`` characters (control characters flattened to spaces)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= _MAX_LINE else flat[: _MAX_LINE - 1] + "…"
