"""The store's committer: writes asked together share a transaction, each with its own outcome.

Real SQLite files in ``tmp_path``; a second connection reads what was committed. To have writes
wait together, a first job holds the committer's thread on an event while the others are asked.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from supervisor.errors import StateError
from supervisor.state.committer import Committer
from supervisor.state.connection import Connection, connect

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Db:
    """A table ``t`` and a committer over it, with what each transaction committed."""

    def __init__(self, tmp_path: Path) -> None:
        self.path = tmp_path / "t.db"
        setup = sqlite3.connect(self.path, isolation_level=None)
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT)")
        setup.close()
        self.conn = Connection(connect(self.path, False, threads=True), self.path)
        self.transactions: list[int] = []
        self.committer = Committer(self.conn, self.transactions.append)

    def insert(self, key: int, value: str = "x") -> Callable[[], None]:
        return lambda: self.conn.execute("INSERT INTO t VALUES (?, ?)", (key, value)).close()

    def rows(self) -> list[tuple[int, str]]:
        reader = sqlite3.connect(self.path)
        try:
            return reader.execute("SELECT k, v FROM t ORDER BY k").fetchall()
        finally:
            reader.close()

    def hold(self) -> threading.Event:
        """Keep the committer's thread busy until the returned event is set."""
        release = threading.Event()
        started = threading.Event()

        def wait() -> None:
            started.set()
            release.wait(10)

        threading.Thread(target=self.committer.call, args=(wait,), daemon=True).start()
        assert started.wait(10)
        return release


async def test_writes_asked_together_commit_in_one_transaction(tmp_path: Path) -> None:
    """Ten awaited writes that wait behind a busy thread: one transaction of ten, all there."""
    db = Db(tmp_path)
    release = db.hold()
    async with anyio.create_task_group() as tg:
        for key in range(10):
            tg.start_soon(db.committer.call_async, db.insert(key))
        await anyio.wait_all_tasks_blocked()
        assert db.committer.in_flight == 10
        release.set()
    assert db.committer.in_flight == 0
    assert db.transactions == [1, 10]
    assert [k for k, _ in db.rows()] == list(range(10))
    db.committer.close()


async def test_a_failing_write_is_undone_alone_and_its_caller_gets_the_error(tmp_path: Path) -> None:
    """In one group: a job that raises LookupError is rolled back to its savepoint (its first
    insert too); the writes before and after it commit."""
    db = Db(tmp_path)
    outcomes: dict[int, BaseException | None] = {}

    def half_then_fail() -> None:
        db.insert(5)()
        raise LookupError("no row")

    async def ask(key: int, job: Callable[[], None]) -> None:
        try:
            await db.committer.call_async(job)
            outcomes[key] = None
        except LookupError as exc:
            outcomes[key] = exc

    release = db.hold()
    async with anyio.create_task_group() as tg:
        for key, job in ((1, db.insert(1)), (5, half_then_fail), (9, db.insert(9))):
            tg.start_soon(ask, key, job)  # one at a time, so they are committed in this order
            await anyio.wait_all_tasks_blocked()
        release.set()
    assert outcomes[1] is None
    assert outcomes[9] is None
    assert isinstance(outcomes[5], LookupError)
    assert [k for k, _ in db.rows()] == [1, 9]
    assert db.transactions[-1] == 2
    db.committer.close()


async def test_when_the_whole_transaction_fails_each_write_gets_its_own_outcome(tmp_path: Path) -> None:
    """A duplicate key fails its statement with an SQLite error (not a job error): the group is
    rolled back and each write is committed again on its own; only the duplicate fails."""
    db = Db(tmp_path)
    await db.committer.call_async(db.insert(1, "first"))
    errors: list[BaseException] = []

    async def ask(job: Callable[[], None]) -> None:
        try:
            await db.committer.call_async(job)
        except (StateError, sqlite3.Error) as exc:
            errors.append(exc)

    release = db.hold()
    async with anyio.create_task_group() as tg:
        for job in (db.insert(2), db.insert(1, "again"), db.insert(3)):
            tg.start_soon(ask, job)
            await anyio.wait_all_tasks_blocked()
        release.set()
    assert len(errors) == 1
    assert db.rows() == [(1, "first"), (2, "x"), (3, "x")]
    assert db.transactions[-2:] == [1, 1]  # the two good writes, each on its own
    db.committer.close()


async def test_a_cancelled_caller_still_has_its_write_committed(tmp_path: Path) -> None:
    """The await is shielded: cancelling the caller does not undo nor skip what it asked for."""
    db = Db(tmp_path)
    release = db.hold()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(db.committer.call_async, db.insert(7))
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
            release.set()
    assert db.rows() == [(7, "x")]
    db.committer.close()


def test_close_commits_what_was_asked_and_refuses_more(tmp_path: Path) -> None:
    """Writes waiting when close is called are committed; a write after it is refused."""
    db = Db(tmp_path)
    release = db.hold()
    waiting = threading.Thread(target=db.committer.call, args=(db.insert(4),))
    waiting.start()
    closer = threading.Thread(target=db.committer.close)
    closer.start()
    release.set()
    closer.join(10)
    waiting.join(10)
    assert db.rows() == [(4, "x")]
    with pytest.raises(RuntimeError, match="closed"):
        db.committer.call(db.insert(5))


def test_a_write_is_visible_to_another_connection_when_call_returns(tmp_path: Path) -> None:
    """Committed, not merely queued: a second connection reads it at once."""
    db = Db(tmp_path)
    for key in range(3):
        db.committer.call(db.insert(key))
        assert [k for k, _ in db.rows()] == list(range(key + 1))
    db.committer.close()
