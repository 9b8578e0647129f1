"""Plain-data views of a run for ``pagent status --json``, ``summary.json`` and the console.

A view is built from the store alone (no process is touched), so it works while a run is
active, after it, and for any earlier run.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Collection, Mapping
from typing import Any

import msgspec

from supervisor.errors import UsageError
from supervisor.plan.model import PlanFile
from supervisor.plan.names import printable
from supervisor.reasons import Reason
from supervisor.state.records import AttemptRecord, RunRecord, TaskRecord, TaskState
from supervisor.state.store import Store

STATE_ORDER = [state.value for state in TaskState]
_MISHAPS = frozenset({Reason.DISK_FULL, Reason.IO_ERROR, Reason.SUPERVISOR_ERROR})


def task_view(record: TaskRecord, attempts: list[AttemptRecord], now: float) -> dict[str, Any]:
    """One task run as a JSON-ready dict; ``reason`` and ``log`` are the latest attempt's."""
    latest = attempts[-1] if attempts else None
    end = record.ended_at or (now if record.state is TaskState.RUNNING else None)
    view: dict[str, Any] = {
        "id": record.task_id,
        "wave": record.wave_name,
        "wave_index": record.wave,
        "state": record.state.value,
        "attempts": record.attempts,
        "exit_code": record.exit_code,
        "reason": (latest.reason if latest and latest.reason else record.reason),
        "branch": record.branch,
        "worktree": record.worktree,
        "log": latest.log_path if latest else None,
        "started_at": record.started_at,
        "ended_at": record.ended_at,
        "duration": None if record.started_at is None or end is None else round(end - record.started_at, 3),
        "session_id": latest.session_id if latest else None,
        "model": latest.model if latest else None,
        "result": _json(latest.result) if latest else None,
        "answer": latest.answer if latest else None,
        "turns": latest.turns if latest else None,
        "cost_usd": latest.cost_usd if latest else None,
        "total_cost_usd": _total_cost(attempts),
        "tokens_in": latest.tokens_in if latest else None,  # as the agent reported them
        "tokens_out": latest.tokens_out if latest else None,
        "diff": json.loads(record.diff) if record.diff else None,
        "conflicts": json.loads(record.conflicts) if record.conflicts else None,
        "publish": json.loads(record.publish) if record.publish else None,
        "history": [
            {
                "attempt": a.number,
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "reason": a.reason,
                "exit_code": a.exit_code,
                "cost_usd": a.cost_usd,
                "log": a.log_path,
                "session_id": a.session_id,
                "model": a.model,
                "result": _json(a.result),
                "answer": a.answer,
            }
            for a in attempts
        ],
    }
    if latest is not None and latest.detail:
        view["detail"] = json.loads(latest.detail)
    if record.state is TaskState.PENDING and record.reason:
        view["reason"] = record.reason
    if Reason.of(record.reason) in _MISHAPS:
        # The supervisor's own machine ended the task (a full disk, a replaced run directory),
        # perhaps before another attempt began: that is why it failed, whatever the last one said.
        view["reason"] = record.reason
    if latest is not None and latest.ended_at is None and record.state is TaskState.RUNNING:
        view["live"] = {
            "pid": latest.pid,
            "cpu_percent": None if latest.cpu_percent is None else round(latest.cpu_percent, 1),
            "rss": latest.rss,
            "procs": latest.procs,
            "since_output": None if latest.last_output_at is None else round(now - latest.last_output_at, 1),
            "sampled_at": latest.sampled_at,
            "status": latest.note,
        }
    return view


def needs_person(task: dict[str, Any]) -> list[str]:
    """What a person must look at for a task that ended ``needs-input``: the question of its
    structured result first ("question: ..."), then one line per tool call Claude was denied
    ("denied Bash: rm -rf build"), or the question it asked in its final message, and the answer
    a person gave already ("answered: ...", waiting for ``--retry-failed``). Empty otherwise.

    The agent wrote these: each line is made printable (no escape sequence, no line break), as
    it goes to terminals, cron mail and notifications."""
    if task.get("reason") != "needs-input":
        return []
    detail = task.get("detail") or {}
    lines = []
    if detail.get("question"):
        lines.append(printable(f"question: {str(detail['question'])[:300]}"))
    for denial in detail.get("permission_denials") or []:
        if not isinstance(denial, dict):
            continue
        tool = str(denial.get("tool_name", "?"))
        given = denial.get("tool_input")
        if isinstance(given, dict):
            shown = given.get("command") or given.get("file_path") or given.get("url") or json.dumps(given)
        else:
            shown = json.dumps(given)
        lines.append(printable(f"denied {tool}: {str(shown)[:300]}"))
    if detail.get("asked"):
        lines.append(printable(f"asked: {str(detail['asked'])[-300:]}"))
    if task.get("answer"):
        lines.append(printable(f"answered: {str(task['answer'])[:300]}"))
    return lines


def _json(text: str | None) -> Any:
    """A JSON column's value (``None`` for none)."""
    return json.loads(text) if text else None


def _total_cost(attempts: list[AttemptRecord]) -> float | None:
    """The summed cost of attempts that reported one; ``None`` if none did."""
    costs = [a.cost_usd for a in attempts if a.cost_usd is not None]
    return round(sum(costs), 6) if costs else None


def run_view(
    store: Store, run: RunRecord, now: float | None = None, only: Collection[str] | None = None
) -> dict[str, Any]:
    """The whole run: its record, counts by state and every task view, in plan order.

    With ``only``, ``tasks`` holds just those tasks (counts and cost are still the whole run's):
    what a notification about one task needs, without reading every attempt of a large run.
    """
    now = time.time() if now is None else now
    if only is None:
        by_task: dict[str, list[AttemptRecord]] = defaultdict(list)
        all_attempts = store.attempts(run.run_id)
        for attempt in all_attempts:
            by_task[attempt.task_id].append(attempt)
        tasks = [task_view(record, by_task[record.task_id], now) for record in store.tasks(run.run_id)]
        counts: Mapping[str, int] = Counter(task["state"] for task in tasks)
        cost = _total_cost(all_attempts)
    else:
        records = [record for record in store.tasks(run.run_id) if record.task_id in only]
        tasks = [task_view(r, store.attempts(run.run_id, r.task_id), now) for r in records]
        counts = store.state_counts(run.run_id)
        found = store.run_cost(run.run_id)
        cost = None if found is None else round(found, 6)
    end = run.ended_at or now
    return {
        "run_id": run.run_id,
        "plan": run.plan_name,
        "plan_path": run.plan_path,
        "status": run.status.value,
        "exit_code": run.exit_code,
        "started_at": run.started_at,
        "ended_at": run.ended_at,
        "duration": round(end - run.started_at, 3),
        "pid": run.pid,
        "base_commit": run.base_commit,
        "counts": {state: counts[state] for state in STATE_ORDER if counts.get(state)},
        "cost_usd": cost,
        "agent_version": run.agent_version,
        "note": run.note,
        "sandbox": run.sandbox,
        "overlaps": json.loads(run.overlaps) if run.overlaps else [],
        "integration": (
            {
                "branch": run.integration_branch,
                "merges": json.loads(run.integration or "[]"),
                "publish": json.loads(run.publish) if run.publish else None,
            }
            if run.integration_branch
            else None
        ),
        "notifications": json.loads(run.notifications) if run.notifications else [],
        "moved_refs": json.loads(run.moved_refs) if run.moved_refs else [],
        "tasks": tasks,
    }


def find_run(plan: PlanFile, store: Store, run_id: str | None) -> RunRecord:
    """The run ``run_id`` of ``plan``, or its latest; ``UsageError`` if there is none."""
    if run_id is not None:
        run = store.run(run_id)
        if run is None or run.plan_key != plan.key:
            raise UsageError(f"{plan.path.name}: no run {run_id!r} (see 'pagent runs {plan.path.name}')")
        return run
    run = store.latest_run(plan.key)
    if run is None:
        raise UsageError(f"{plan.path.name}: no run yet")
    return run


def indented_json(value: Any) -> str:
    """Exactly ``json.dumps(value, indent=2)``, in a third of the time: json's C encoder writes it
    compact (json indents only in Python: 29 ms for the view of a 1000-task run, against 11),
    msgspec indents that text token for token. What msgspec cannot read back (NaN and the
    infinities, lone surrogates, all of which json writes) takes json's indenting encoder.
    ``summary.json``, ``pagent status --json`` and ``pagent runs --json`` are written by it."""
    compact = json.dumps(value)
    try:
        return msgspec.json.format(compact, indent=2)
    except msgspec.DecodeError:
        return json.dumps(value, indent=2)
