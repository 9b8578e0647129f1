"""Earlier runs of a plan: the listing of ``pagent runs`` and retention (``keep_runs``).

Retention forgets a run's logs, prompts, summary and state records. It never touches a git
branch or a worktree: every commit an earlier run made stays reachable, and its worktrees stay
until ``pagent clean`` removes them.
"""

from __future__ import annotations

import shutil
from typing import Any

from supervisor.plan.model import Plan, PlanFile
from supervisor.state.layout import Layout
from supervisor.state.records import RunStatus
from supervisor.state.store import Store
from supervisor.state.views import STATE_ORDER


def list_runs(plan: PlanFile, store: Store) -> list[dict[str, Any]]:
    """Every run of ``plan``, oldest first: id, start, duration, status, counts by state, cost."""
    rows = []
    for run in store.runs(plan.key):
        counts = store.state_counts(run.run_id)
        rows.append(
            {
                "run_id": run.run_id,
                "started_at": run.started_at,
                "ended_at": run.ended_at,
                "duration": None if run.ended_at is None else round(run.ended_at - run.started_at, 3),
                "status": run.status.value,
                "exit_code": run.exit_code,
                "counts": {state: counts[state] for state in STATE_ORDER if counts.get(state)},
                "cost_usd": store.run_cost(run.run_id),
            }
        )
    return rows


def prune(plan: Plan, store: Store, keep: int) -> list[str]:
    """Forget all but the newest ``keep`` runs of ``plan`` (never a running one); their ids."""
    runs = store.runs(plan.key)
    doomed = [run for run in runs[: max(0, len(runs) - keep)] if run.status is not RunStatus.RUNNING]
    for run in doomed:
        shutil.rmtree(Layout.of(plan).run_dir(run.run_id), ignore_errors=True)
        store.delete_run(run.run_id)
    return [run.run_id for run in doomed]
