"""``Store.success_durations``: the history the schedule's estimates come from, on a real file."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from supervisor.state.records import AttemptRecord, RunRecord, TaskRecord
from supervisor.state.store import Store


def night(
    store: Store, run_id: str, plan_key: str, started: float, attempts: list[tuple[str, float, str]]
) -> None:
    """A run of ``plan_key`` with one ended attempt per ``(task, seconds, reason)``."""
    tasks = sorted({task for task, _, _ in attempts})
    store.create_run(
        RunRecord(run_id, plan_key, "p", f"/{plan_key}", started_at=started),
        [TaskRecord(run_id, task, 0, "w") for task in tasks],
    )
    numbers: dict[str, int] = {}
    for task, seconds, reason in attempts:
        number = numbers[task] = numbers.get(task, 0) + 1
        begun = started + number * 1000
        store.add_attempt(AttemptRecord(run_id, task, number, started_at=begun, log_path="l", cookie="c"))
        store.update_attempt(run_id, task, number, ended_at=begun + seconds, reason=reason)


def test_only_successful_attempts_of_the_plan_newest_first(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    night(store, "r1", "plan.toml", 1.0, [("a", 10, "ok"), ("b", 99, "exit 1"), ("b", 5, "ok")])
    night(store, "r2", "plan.toml", 2.0, [("a", 12, "ok"), ("b", 7, "rate-limited")])
    night(store, "x1", "other.toml", 3.0, [("a", 500, "ok")])
    assert store.success_durations("plan.toml") == {"a": [12.0, 10.0], "b": [5.0]}
    assert store.success_durations("nothing.toml") == {}


def test_only_the_newest_runs_count(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    for n in range(12):
        night(store, f"r{n:02d}", "plan.toml", float(n), [("a", float(n), "ok")])
    assert store.success_durations("plan.toml") == {"a": [float(n) for n in range(11, 1, -1)]}
    assert store.success_durations("plan.toml", runs=2) == {"a": [11.0, 10.0]}


def test_an_attempt_still_running_does_not_count(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    night(store, "r1", "plan.toml", 1.0, [("a", 10, "ok")])
    store.add_attempt(AttemptRecord("r1", "a", 2, started_at=5.0, log_path="l", cookie="c", reason="ok"))
    assert store.success_durations("plan.toml") == {"a": [10.0]}


def test_ten_thousand_tasks_over_ten_runs_read_quickly(tmp_path: Path) -> None:
    """100,000 successful attempts in the store (written straight with sqlite3, for speed): the
    schedule's history comes back in well under a second (measured: about 0.1 s)."""
    path = tmp_path / "state.db"
    Store(path).close()  # the schema
    tasks = [f"t{n:05d}" for n in range(10_000)]
    with closing(sqlite3.connect(path)) as db, db:
        db.executemany(
            "INSERT INTO runs (run_id, plan_key, plan_name, plan_path, started_at, status)"
            " VALUES (?, 'plan.toml', 'p', '/p', ?, 'succeeded')",
            [(f"r{r}", float(r)) for r in range(10)],
        )
        db.executemany(
            "INSERT INTO attempts (run_id, task_id, number, started_at, log_path, cookie, ended_at, reason)"
            " VALUES (?, ?, 1, 1.0, 'l', 'c', 4.0, 'ok')",
            [(f"r{r}", t) for r in range(10) for t in tasks],
        )
    store = Store(path, read_only=True)
    began = time.perf_counter()
    found = store.success_durations("plan.toml")
    took = time.perf_counter() - began
    store.close()
    assert len(found) == 10_000
    assert all(seconds == [3.0] * 10 for seconds in found.values())
    assert took < 1.0, took
