"""The run state, the only writer of a run's records: checked, persisted first, atomic."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import anyio
import pytest

from supervisor.engine.runstate import RunState
from supervisor.state.records import AttemptRecord, RunRecord, RunStatus, TaskRecord, TaskState
from supervisor.state.store import Store

RUN = "20261201-020000.000-abcd"


def make_state(tmp_path: Path, *task_ids: str) -> tuple[Store, RunState]:
    store = Store(tmp_path / "state.db")
    run = RunRecord(RUN, "plan.toml", "p", str(tmp_path / "plan.toml"), started_at=1.0)
    tasks = [TaskRecord(RUN, task_id, 0, "w") for task_id in task_ids]
    return store, RunState.create(store, run, tasks)


def attempt(task_id: str, number: int) -> AttemptRecord:
    return AttemptRecord(RUN, task_id, number, started_at=2.0, log_path="log", cookie=f"k:{task_id}:{number}")


def stored(store: Store, task_id: str) -> TaskRecord:
    return next(r for r in store.tasks(RUN) if r.task_id == task_id)


def test_an_illegal_transition_raises_and_writes_nothing(tmp_path: Path) -> None:
    """pending -> succeeded skips running: refused, and neither the store nor memory changes."""
    store, state = make_state(tmp_path, "a")
    with pytest.raises(ValueError, match="illegal task transition pending -> succeeded"):
        state.set_task("a", state=TaskState.SUCCEEDED)
    assert stored(store, "a").state is TaskState.PENDING
    assert state["a"].state is TaskState.PENDING


def test_a_change_is_in_the_store_when_set_task_returns(tmp_path: Path) -> None:
    """What memory says, the database says too (a second connection reads it)."""
    _, state = make_state(tmp_path, "a")
    anyio.run(state.begin_attempt, attempt("a", 1), 2.0)
    record = state.set_task("a", state=TaskState.FAILED, reason="exit 1")
    other = Store(tmp_path / "state.db")
    assert stored(other, "a") == record == state["a"]
    assert (record.state, record.attempts, record.reason) == (TaskState.FAILED, 1, "exit 1")


def test_ending_an_attempt_and_moving_the_task_on_is_one_transaction(tmp_path: Path) -> None:
    """A failure while moving the task on (a column that does not exist) leaves the attempt open:
    both changes happen, or neither."""
    store, state = make_state(tmp_path, "a")
    anyio.run(state.begin_attempt, attempt("a", 1), 2.0)
    with pytest.raises(Exception, match="no_such_column"):
        anyio.run(state.end_attempt, "a", 1, {"ended_at": 3.0, "reason": "ok"}, {"no_such_column": 1})
    (open_attempt,) = store.attempts(RUN, "a")
    assert open_attempt.ended_at is None
    assert state["a"].state is TaskState.RUNNING
    anyio.run(
        state.end_attempt,
        "a",
        1,
        {"ended_at": 3.0, "reason": "ok", "cost_usd": 0.5},
        {"state": TaskState.SUCCEEDED},
    )
    assert store.attempts(RUN, "a")[0].ended_at == 3.0
    assert stored(store, "a").state is TaskState.SUCCEEDED
    assert state.spent == 0.5


def test_an_illegal_end_writes_neither_the_attempt_nor_the_task(tmp_path: Path) -> None:
    """The transition is checked before anything is written."""
    store, state = make_state(tmp_path, "a")
    with pytest.raises(ValueError, match="illegal"):
        anyio.run(state.end_attempt, "a", 1, {"ended_at": 3.0}, {"state": TaskState.SUCCEEDED})
    assert store.attempts(RUN, "a") == []


def test_abandon_repairs_a_dead_run_in_one_go(tmp_path: Path) -> None:
    """Open attempts end interrupted; running tasks and pending ones with attempts become
    interrupted, untouched pending ones not_run, finished ones stay; the run is interrupted."""
    store, state = make_state(tmp_path, "running", "retrying", "waiting", "done")
    anyio.run(state.begin_attempt, attempt("running", 1), 2.0)
    anyio.run(state.begin_attempt, attempt("retrying", 1), 2.0)
    anyio.run(
        state.end_attempt, "retrying", 1, {"ended_at": 3.0, "reason": "exit 1"}, {"state": TaskState.PENDING}
    )
    anyio.run(state.begin_attempt, attempt("done", 1), 2.0)
    anyio.run(state.end_attempt, "done", 1, {"ended_at": 3.0, "reason": "ok"}, {"state": TaskState.SUCCEEDED})
    dead = RunState(store, store.run(RUN))  # type: ignore[arg-type]
    dead.abandon(now=9.0)
    states = {r.task_id: (r.state, r.reason) for r in store.tasks(RUN)}
    assert states == {
        "running": (TaskState.INTERRUPTED, "interrupted"),
        "retrying": (TaskState.INTERRUPTED, "interrupted"),
        "waiting": (TaskState.NOT_RUN, "interrupted"),
        "done": (TaskState.SUCCEEDED, None),
    }
    assert [a.reason for a in store.attempts(RUN, "running")] == ["interrupted"]
    assert store.open_attempts(RUN) == []
    assert store.run(RUN).status is RunStatus.INTERRUPTED  # type: ignore[union-attr]
    assert {r.state for r in dead.records.values()} == {s for s, _ in states.values()}


def test_reopen_takes_what_did_not_succeed_back_and_adds_new_tasks(tmp_path: Path) -> None:
    """--retry-failed: failed and not_run go back to pending, succeeded and conflict stay, a task
    new in the plan is added, the run is running again."""
    store, state = make_state(tmp_path, "bad", "good", "clash", "later")
    for task_id, final in (
        ("bad", TaskState.FAILED),
        ("good", TaskState.SUCCEEDED),
        ("clash", TaskState.SUCCEEDED),
    ):
        anyio.run(state.begin_attempt, attempt(task_id, 1), 2.0)
        anyio.run(state.end_attempt, task_id, 1, {"ended_at": 3.0}, {"state": final})
    state.set_task("clash", state=TaskState.CONFLICT)
    state.give_up("later", TaskState.NOT_RUN, "an earlier wave failed (bad)")
    state.update_run(status=RunStatus.FAILED)
    again = RunState(store, store.run(RUN))  # type: ignore[arg-type]
    plan_tasks = [(t, 0, "w") for t in ("bad", "good", "clash", "later", "new")]
    again.reopen(plan_tasks, [TaskRecord(RUN, "new", 0, "w")], status=RunStatus.RUNNING)
    states = {r.task_id: r.state for r in store.tasks(RUN)}
    assert states == {
        "bad": TaskState.PENDING,
        "good": TaskState.SUCCEEDED,
        "clash": TaskState.CONFLICT,
        "later": TaskState.PENDING,
        "new": TaskState.PENDING,
    }
    assert {k: v.state for k, v in again.records.items()} == states
    assert store.run(RUN).status is RunStatus.RUNNING  # type: ignore[union-attr]


@pytest.mark.anyio
async def test_dependants_wait_until_a_task_is_final(tmp_path: Path) -> None:
    """wait_finished returns once the task reaches a final state, not on a retry to pending."""
    _, state = make_state(tmp_path, "a")
    woke: list[TaskState] = []

    async def dependant() -> None:
        await state.wait_finished("a")
        woke.append(state["a"].state)

    async with anyio.create_task_group() as tg:
        tg.start_soon(dependant)
        await anyio.lowlevel.checkpoint()
        await state.begin_attempt(attempt("a", 1), 2.0)
        await state.end_attempt("a", 1, {"ended_at": 3.0}, {"state": TaskState.PENDING})
        await anyio.lowlevel.checkpoint()
        assert woke == []
        await state.begin_attempt(attempt("a", 2), 4.0)
        await state.end_attempt("a", 2, {"ended_at": 5.0}, {"state": TaskState.FAILED})
    assert woke == [TaskState.FAILED]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_an_attempts_files_are_made_on_the_writing_thread_before_its_record(tmp_path: Path) -> None:
    """``begin_attempt_after``: ``make`` runs once, off the loop's thread, before the attempt's
    record exists; what it made comes back, and the record is there afterwards."""
    store, state = make_state(tmp_path, "a")
    seen: list[tuple[str, int]] = []

    def make() -> str:
        reader = Store(tmp_path / "state.db", read_only=True)
        try:
            seen.append((threading.current_thread().name, len(reader.attempts(RUN, "a"))))
        finally:
            reader.close()
        return "the log"

    made = await state.begin_attempt_after(attempt("a", 1), 2.0, make, lambda log: None)
    assert made == "the log"
    assert seen == [("pagent-committer", 0)]
    assert [a.number for a in store.attempts(RUN, "a")] == [1]
    assert state["a"].state is TaskState.RUNNING


@pytest.mark.anyio
async def test_files_that_cannot_be_made_begin_no_attempt(tmp_path: Path) -> None:
    store, state = make_state(tmp_path, "a")

    def make() -> str:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        await state.begin_attempt_after(attempt("a", 1), 2.0, make, lambda log: None)
    assert store.attempts(RUN, "a") == []
    assert state["a"].state is TaskState.PENDING
    assert stored(store, "a").state is TaskState.PENDING


@pytest.mark.anyio
async def test_files_made_for_a_record_that_cannot_be_written_are_discarded(tmp_path: Path) -> None:
    """The same attempt twice: the second record cannot be written, and what was made for it is
    handed to ``discard`` (the log's file is closed)."""
    _, state = make_state(tmp_path, "a")
    await state.begin_attempt(attempt("a", 1), 2.0)
    await state.end_attempt("a", 1, {"ended_at": 3.0}, {"state": TaskState.PENDING})
    discarded: list[str] = []
    with pytest.raises(sqlite3.IntegrityError, match="UNIQUE constraint failed"):
        await state.begin_attempt_after(attempt("a", 1), 4.0, lambda: "the log", discarded.append)
    assert discarded == ["the log"]
