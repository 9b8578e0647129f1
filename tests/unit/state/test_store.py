"""The SQLite store on a real file, and the task state machine it records."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from supervisor.state.records import (
    TRANSITIONS,
    AttemptRecord,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskState,
    check_transition,
    new_run_id,
)
from supervisor.state.store import Store

PLAN = "nightly.toml"


def run_record(
    run_id: str = "20261124-020000-ab12", plan_key: str = PLAN, started_at: float = 1000.0
) -> RunRecord:
    """A fresh running run of ``plan_key``."""
    return RunRecord(
        run_id=run_id,
        plan_key=plan_key,
        plan_name="nightly",
        plan_path=f"/plans/{plan_key}",
        started_at=started_at,
        pid=4242,
        pid_started=999.5,
        repo="/repo",
        base_commit="a" * 40,
    )


def task_records(run_id: str) -> list[TaskRecord]:
    """Three pending tasks, deliberately not inserted in wave order."""
    return [
        TaskRecord(run_id=run_id, task_id="late", wave=1, wave_name="second", branch="pagent/nightly/late"),
        TaskRecord(run_id=run_id, task_id="b", wave=0, wave_name="first", branch="pagent/nightly/b"),
        TaskRecord(run_id=run_id, task_id="a", wave=0, wave_name="first", worktree="/trees/a"),
    ]


def attempt_record(run_id: str, task_id: str, number: int, **changes: object) -> AttemptRecord:
    """Attempt ``number`` of ``task_id``, started and not yet ended."""
    return AttemptRecord(
        run_id=run_id,
        task_id=task_id,
        number=number,
        started_at=1000.0 + number,
        log_path=f"/logs/{task_id}.{number}.log",
        cookie=f"uid:{run_id}:{task_id}:{number}",
        **changes,  # type: ignore[arg-type]
    )


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where the state database goes; its directory does not exist yet."""
    return tmp_path / ".pagent" / "state.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[Store]:
    """A store on a real file, closed after the test."""
    opened = Store(db_path)
    yield opened
    opened.close()


@pytest.fixture
def second(db_path: Path, store: Store) -> Iterator[Store]:
    """Another store on the same file, opened while ``store`` is open (as ``pagent status`` would be)."""
    opened = Store(db_path)
    yield opened
    opened.close()


RUN = "20261124-020000-ab12"


def test_store_creates_its_directory_and_uses_wal(store: Store, db_path: Path) -> None:
    """Opening a store creates the missing directory and a SQLite file in WAL journal mode."""
    assert db_path.is_file()
    with closing(sqlite3.connect(db_path)) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_create_run_records_run_and_tasks(store: Store) -> None:
    """A created run and its task runs read back equal, tasks in wave order then insertion order."""
    store.create_run(run_record(), task_records(RUN))
    assert store.run(RUN) == run_record()
    tasks = store.tasks(RUN)
    assert [t.task_id for t in tasks] == ["b", "a", "late"]
    assert tasks == sorted(task_records(RUN), key=lambda t: t.wave)
    assert all(t.state is TaskState.PENDING for t in tasks)
    assert store.run("nope") is None
    assert store.tasks("nope") == []


def test_records_are_visible_from_a_second_store(store: Store, second: Store) -> None:
    """Each write is committed on return: another connection to the file sees it at once."""
    store.create_run(run_record(), task_records(RUN))
    assert second.run(RUN) == run_record()
    store.update_task(RUN, "a", state=TaskState.RUNNING, attempts=1, started_at=1001.0)
    store.update_run(RUN, status=RunStatus.FAILED, ended_at=2000.0, exit_code=1)
    task = next(t for t in second.tasks(RUN) if t.task_id == "a")
    assert task.state is TaskState.RUNNING
    assert (task.attempts, task.started_at) == (1, 1001.0)
    run = second.run(RUN)
    assert run is not None
    assert run.status is RunStatus.FAILED
    assert (run.ended_at, run.exit_code) == (2000.0, 1)


def test_updates_survive_closing_and_reopening(db_path: Path) -> None:
    """What one store wrote is there after it is closed and the file is opened again."""
    first = Store(db_path)
    first.create_run(run_record(), task_records(RUN))
    first.update_task(RUN, "b", state=TaskState.SUCCEEDED, reason="ok", exit_code=0)
    first.close()
    reopened = Store(db_path)
    try:
        task = next(t for t in reopened.tasks(RUN) if t.task_id == "b")
        assert (task.state, task.reason, task.exit_code) == (TaskState.SUCCEEDED, "ok", 0)
    finally:
        reopened.close()


def test_reader_is_not_blocked_by_an_open_write_transaction(store: Store, db_path: Path) -> None:
    """With WAL a reader gets the last committed state while a writer holds an uncommitted change."""
    store.create_run(run_record(), task_records(RUN))
    writer = sqlite3.connect(db_path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("UPDATE tasks SET state = 'running' WHERE task_id = 'a'")
        assert {t.task_id: t.state for t in store.tasks(RUN)}["a"] is TaskState.PENDING
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert {t.task_id: t.state for t in store.tasks(RUN)}["a"] is TaskState.RUNNING


def test_add_and_finish_attempts(store: Store, second: Store) -> None:
    """An attempt and its task's change are written together; finishing one updates both."""
    store.create_run(run_record(), task_records(RUN))
    first = attempt_record(RUN, "a", 1, pid=100, pid_started=1000.5)
    store.add_attempt(first, state=TaskState.RUNNING, attempts=1)
    assert second.attempts(RUN, "a") == [first]
    assert next(t for t in second.tasks(RUN) if t.task_id == "a").state is TaskState.RUNNING

    store.update_attempt(RUN, "a", 1, cpu_percent=12.5, rss=1 << 20, procs=3, sampled_at=1005.0)
    store.finish_attempt(
        first,
        {"ended_at": 1010.0, "exit_code": 3, "reason": "exit 3"},
        {"state": TaskState.PENDING, "reason": "exit 3", "exit_code": 3},
    )
    store.add_attempt(attempt_record(RUN, "a", 2), state=TaskState.RUNNING, attempts=2)
    store.finish_attempt(
        attempt_record(RUN, "a", 2),
        {"ended_at": 1020.0, "exit_code": 0, "reason": "ok"},
        {"state": TaskState.SUCCEEDED, "reason": "ok", "exit_code": 0, "ended_at": 1020.0},
    )

    attempts = second.attempts(RUN, "a")
    assert [(a.number, a.reason, a.ended_at) for a in attempts] == [(1, "exit 3", 1010.0), (2, "ok", 1020.0)]
    assert (attempts[0].cpu_percent, attempts[0].rss, attempts[0].procs) == (12.5, 1 << 20, 3)
    task = next(t for t in second.tasks(RUN) if t.task_id == "a")
    assert (task.state, task.attempts, task.reason, task.ended_at) == (TaskState.SUCCEEDED, 2, "ok", 1020.0)


def test_attempts_of_a_run_are_ordered_by_task_then_number(store: Store) -> None:
    """attempts(run) lists every task's attempts, by task id and then attempt number."""
    store.create_run(run_record(), task_records(RUN))
    for task_id, number in [("b", 2), ("a", 1), ("b", 1)]:
        store.add_attempt(attempt_record(RUN, task_id, number))
    assert [(a.task_id, a.number) for a in store.attempts(RUN)] == [("a", 1), ("b", 1), ("b", 2)]
    assert [a.number for a in store.attempts(RUN, "b")] == [1, 2]


def test_open_attempts_are_those_not_ended(store: Store) -> None:
    """open_attempts returns the run's attempts without an end time, and no other run's."""
    other = "20261125-020000-cd34"
    store.create_run(run_record(), task_records(RUN))
    store.create_run(run_record(other), task_records(other))
    store.add_attempt(attempt_record(RUN, "a", 1))
    store.add_attempt(attempt_record(RUN, "b", 1))
    store.add_attempt(attempt_record(other, "a", 1))
    store.finish_attempt(attempt_record(RUN, "a", 1), {"ended_at": 1005.0, "reason": "ok"}, {})
    assert [(a.task_id, a.number) for a in store.open_attempts(RUN)] == [("b", 1)]
    assert [a.run_id for a in store.open_attempts(other)] == [other]


def test_runs_are_ordered_by_run_id_per_plan(store: Store) -> None:
    """runs() lists a plan's runs oldest first by their time-sorted run ids; latest_run() is the newest."""
    times = [2_000_000_000.0, 1_800_000_000.0, 1_900_000_000.0]
    for t in times:  # inserted out of time order
        store.create_run(run_record(new_run_id(t), started_at=t), [])
    store.create_run(
        run_record(new_run_id(2_100_000_000.0), plan_key="other.toml", started_at=2_100_000_000.0), []
    )

    ids = [new_run_id(t)[:15] for t in sorted(times)]  # the time part; the suffix is random
    assert [r.run_id[:15] for r in store.runs(PLAN)] == ids
    latest = store.latest_run(PLAN)
    assert latest is not None
    assert latest.run_id[:15] == ids[-1]
    assert store.latest_run("never.toml") is None
    assert store.runs("never.toml") == []


def test_runs_started_in_the_same_second_keep_their_start_order(store: Store) -> None:
    """Two runs whose ids share a second are ordered by start time, not by their random id suffix."""
    earlier, later = "20261124-020000-ffff", "20261124-020000-0000"
    store.create_run(run_record(earlier, started_at=1000.2), [])
    store.create_run(run_record(later, started_at=1000.7), [])
    assert [r.run_id for r in store.runs(PLAN)] == [earlier, later]
    latest = store.latest_run(PLAN)
    assert latest is not None
    assert latest.run_id == later


def test_new_run_ids_sort_by_time() -> None:
    """Run ids made at later seconds sort after earlier ones."""
    assert new_run_id(1_800_000_000.0) < new_run_id(1_800_000_001.0) < new_run_id(1_900_000_000.0)
    assert new_run_id(1_800_000_000.0).startswith("20270115-080000.000-")


def test_delete_run_removes_its_tasks_and_attempts(store: Store, second: Store) -> None:
    """Deleting a run removes it, its task runs and attempts, and leaves other runs alone."""
    other = "20261125-020000-cd34"
    for run_id in (RUN, other):
        store.create_run(run_record(run_id), task_records(run_id))
        store.add_attempt(attempt_record(run_id, "a", 1), state=TaskState.RUNNING, attempts=1)
    store.delete_run(RUN)
    assert second.run(RUN) is None
    assert second.tasks(RUN) == []
    assert second.attempts(RUN) == []
    assert len(second.tasks(other)) == 3
    assert len(second.attempts(other)) == 1
    assert [r.run_id for r in second.runs(PLAN)] == [other]


def test_deleting_a_run_row_cascades_in_sqlite(store: Store, db_path: Path) -> None:
    """The schema's foreign keys cascade: deleting only the run row also removes its tasks and attempts."""
    store.create_run(run_record(), task_records(RUN))
    store.add_attempt(attempt_record(RUN, "a", 1))
    with closing(sqlite3.connect(db_path, isolation_level=None)) as raw:
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute("DELETE FROM runs WHERE run_id = ?", (RUN,))
    assert store.tasks(RUN) == []
    assert store.attempts(RUN) == []


@pytest.mark.parametrize(
    "update",
    [
        lambda s: s.update_run("nope", status=RunStatus.FAILED),
        lambda s: s.update_task(RUN, "nope", state=TaskState.RUNNING),
        lambda s: s.update_task("nope", "a", state=TaskState.RUNNING),
        lambda s: s.update_attempt(RUN, "a", 7, reason="ok"),
        lambda s: s.finish_attempt(
            attempt_record(RUN, "a", 7), {"reason": "ok"}, {"state": TaskState.FAILED}
        ),
        lambda s: s.finish_attempt(attempt_record(RUN, "a", 7), {}, {"state": TaskState.FAILED}),
    ],
    ids=["run", "task", "task-of-missing-run", "attempt", "finish-attempt", "finish-attempt-without-changes"],
)
def test_update_of_a_missing_row_raises_lookup_error(store: Store, update: object) -> None:
    """Updating a row that does not exist raises LookupError instead of silently doing nothing."""
    store.create_run(run_record(), task_records(RUN))
    with pytest.raises(LookupError, match="no row in"):
        update(store)  # type: ignore[operator]
    assert store.tasks(RUN) == sorted(task_records(RUN), key=lambda t: t.wave)


def test_failed_finish_attempt_changes_nothing(store: Store) -> None:
    """If the task half of finish_attempt fails, the attempt half is rolled back too."""
    store.create_run(run_record(), task_records(RUN))
    ghost = attempt_record(RUN, "ghost", 1)  # an attempt whose task run does not exist
    store.add_attempt(ghost)
    with pytest.raises(LookupError):
        store.finish_attempt(ghost, {"ended_at": 1005.0, "reason": "ok"}, {"state": TaskState.SUCCEEDED})
    assert store.attempts(RUN, "ghost") == [ghost]
    # The failed transaction is over: the store keeps working.
    store.update_task(RUN, "a", attempts=1)


def test_failed_add_attempt_inserts_nothing(store: Store) -> None:
    """add_attempt whose task change hits no row does not leave the attempt behind."""
    store.create_run(run_record(), task_records(RUN))
    with pytest.raises(LookupError):
        store.add_attempt(attempt_record(RUN, "ghost", 1), state=TaskState.RUNNING)
    assert store.attempts(RUN) == []


def test_create_run_is_all_or_nothing(store: Store) -> None:
    """A run whose insert fails (duplicate run id) adds none of its task runs."""
    store.create_run(run_record(), task_records(RUN)[:1])
    with pytest.raises(sqlite3.IntegrityError):
        store.create_run(run_record(), task_records(RUN)[1:])
    assert [t.task_id for t in store.tasks(RUN)] == ["late"]


def test_add_tasks_extends_an_existing_run(store: Store) -> None:
    """Task runs added to an existing run appear among its tasks, as pending."""
    store.create_run(run_record(), task_records(RUN)[:1])
    store.add_tasks([TaskRecord(run_id=RUN, task_id="new", wave=0, wave_name="first")])
    assert [(t.task_id, t.state) for t in store.tasks(RUN)] == [
        ("new", TaskState.PENDING),
        ("late", TaskState.PENDING),
    ]


# -- the task state machine -------------------------------------------------------------------

ALLOWED = [
    (TaskState.PENDING, TaskState.RUNNING),
    (TaskState.PENDING, TaskState.NOT_RUN),
    (TaskState.PENDING, TaskState.FAILED),
    (TaskState.PENDING, TaskState.INTERRUPTED),
    (TaskState.RUNNING, TaskState.SUCCEEDED),
    (TaskState.RUNNING, TaskState.FAILED),
    (TaskState.RUNNING, TaskState.PENDING),
    (TaskState.RUNNING, TaskState.INTERRUPTED),
    (TaskState.FAILED, TaskState.PENDING),
    (TaskState.NOT_RUN, TaskState.PENDING),
    (TaskState.INTERRUPTED, TaskState.PENDING),
    (TaskState.SUCCEEDED, TaskState.CONFLICT),
]


@pytest.mark.parametrize(("old", "new"), ALLOWED, ids=[f"{a}->{b}" for a, b in ALLOWED])
def test_documented_transitions_are_allowed(old: TaskState, new: TaskState) -> None:
    """Each move of the documented life cycle (run, retry, fail, skip, interrupt, --retry-failed) passes."""
    check_transition(old, new)


def test_the_documented_transitions_are_all_there_are() -> None:
    """Besides staying put, exactly the documented moves are legal."""
    legal = {(old, new) for old in TaskState for new in TaskState if old != new and new in TRANSITIONS[old]}
    assert legal == set(ALLOWED)


@pytest.mark.parametrize("state", list(TaskState))
def test_staying_in_a_state_is_allowed(state: TaskState) -> None:
    """Writing the same state again is not a transition and is accepted."""
    check_transition(state, state)


ILLEGAL = [
    (TaskState.SUCCEEDED, TaskState.RUNNING),
    (TaskState.SUCCEEDED, TaskState.PENDING),
    (TaskState.SUCCEEDED, TaskState.FAILED),
    (TaskState.FAILED, TaskState.RUNNING),
    (TaskState.FAILED, TaskState.SUCCEEDED),
    (TaskState.NOT_RUN, TaskState.RUNNING),
    (TaskState.INTERRUPTED, TaskState.SUCCEEDED),
    (TaskState.PENDING, TaskState.SUCCEEDED),
    (TaskState.RUNNING, TaskState.NOT_RUN),
]


@pytest.mark.parametrize(("old", "new"), ILLEGAL, ids=[f"{a}->{b}" for a, b in ILLEGAL])
def test_illegal_transitions_are_refused(old: TaskState, new: TaskState) -> None:
    """A move outside the life cycle, such as succeeded -> running, raises ValueError naming both states."""
    with pytest.raises(ValueError, match=f"illegal task transition {old} -> {new}"):
        check_transition(old, new)


def test_finished_states() -> None:
    """Only pending and running are unfinished."""
    assert {s for s in TaskState if not s.finished} == {TaskState.PENDING, TaskState.RUNNING}
