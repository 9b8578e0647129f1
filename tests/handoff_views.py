"""Real run views for the hand-off tests: records written to a real SQLite store, read back by
``views.run_view`` exactly as ``pagent status --json`` reads them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supervisor.state.records import AttemptRecord, RunRecord, RunStatus, TaskRecord, TaskState
from supervisor.state.store import Store
from supervisor.state.views import run_view

RUN_ID = "20261124-020000.123-ab12"
DENIED = {"tool_name": "Bash", "tool_input": {"command": "rm -rf build"}}


def _attempt(
    store: Store, task: str, number: int, reason: str, *, cost: float, detail: dict[str, Any]
) -> None:
    """One finished attempt of ``task``."""
    attempt = AttemptRecord(RUN_ID, task, number, 1000.0 + number, f"/runs/logs/{task}.{number}.log", "c")
    store.add_attempt(attempt)
    changes = {"ended_at": 1100.0 + number, "reason": reason, "cost_usd": cost, "detail": json.dumps(detail)}
    store.finish_attempt(attempt, changes, {"attempts": number})


def finished_run(tmp_path: Path, *, stopped: str | None = None) -> dict[str, Any]:
    """A finished run of plan "nightly": ``fix-ok`` succeeded, ``fix-verify`` failed verify after
    two attempts, ``fix-ask`` ended needs-input with a denied Bash call. ``stopped`` sets the
    run's note the way the runner does when it stops an agent kind (e.g. "auth")."""
    store = Store(tmp_path / "state.db")
    run = RunRecord(RUN_ID, "k", "nightly", str(tmp_path / "nightly.toml"), 1000.0, pid=1)
    tasks = [
        TaskRecord(RUN_ID, task, 0, "one", branch=f"pagent/nightly/{task}")
        for task in ("fix-ok", "fix-verify", "fix-ask")
    ]
    store.create_run(run, tasks)
    _attempt(
        store,
        "fix-ok",
        1,
        "ok",
        cost=0.25,
        detail={"verify_exit": 0, "result_text": "Done: handled the error."},
    )
    _attempt(store, "fix-verify", 1, "verify", cost=0.5, detail={"verify_exit": 1})
    _attempt(store, "fix-verify", 2, "verify", cost=0.5, detail={"verify_exit": 1})
    _attempt(store, "fix-ask", 1, "needs-input", cost=0.1, detail={"permission_denials": [DENIED]})
    diff = {
        "commits": 1,
        "files": 2,
        "insertions": 10,
        "deletions": 3,
        "paths": ["a.py", "b.py"],
        "uncommitted": False,
    }
    store.update_task(
        RUN_ID,
        "fix-ok",
        state=TaskState.SUCCEEDED,
        reason="ok",
        diff=json.dumps(diff),
        started_at=1000.0,
        ended_at=1200.0,
    )
    store.update_task(
        RUN_ID,
        "fix-verify",
        state=TaskState.FAILED,
        reason="verify",
        exit_code=0,
        started_at=1000.0,
        ended_at=1200.0,
    )
    store.update_task(
        RUN_ID, "fix-ask", state=TaskState.FAILED, reason="needs-input", started_at=1000.0, ended_at=1200.0
    )
    note = f"claude agents stopped: {stopped}; no further claude task was started" if stopped else None
    store.update_run(RUN_ID, status=RunStatus.FAILED, exit_code=1, ended_at=1300.0, note=note)
    record = store.run(RUN_ID)
    assert record is not None
    view = run_view(store, record, now=1300.0)
    store.close()
    return view
