"""The state database's one writer thread: every write is committed there, in the order given.

A write is a *job*: a function that changes rows through the writer's connection, inside a
transaction the committer opens. Jobs that are waiting together when the thread comes round are
committed in one transaction (a *group commit*), each inside a savepoint of its own, so one that
fails (a row that is not there) is undone alone and the others still commit. Whatever a job
raises goes back to its caller, as if it had been a transaction by itself: when the whole
transaction fails (a full disk, an I/O error), it is rolled back and every job of it is committed
again on its own, each in its own transaction, so each caller learns its own outcome.

A caller either waits on its thread (``call``: the store's ordinary methods) or awaits on the
event loop (``call_async``: the attempts' writes, so that the loop goes on with the other
attempts meanwhile; the interpreter lets go of the GIL while SQLite works), or, for a write
nothing waits for, only asks (``submit``: an attempt's reference once it runs). Either way the write
is committed before the call returns, exactly as before the committer existed: "persisted, then
applied" still holds, and a SIGKILL at any instant leaves the database as one of the orders of
the writes that were asked for. The await is shielded: once asked for, a write always completes
(a cancelled caller would otherwise leave the database ahead of what it believes).

The thread is a daemon thread, started with the first write, ended by ``close`` once every write
asked for has been committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any

import anyio

from supervisor.state.connection import Connection

Job = Callable[[], None]

# Errors of one job that leave the transaction usable: undone with its savepoint alone. Anything
# else (an SQLite error of the file or the disk, as ``StateError``) may have ended the transaction.
_JOB_ERRORS = (LookupError, ValueError, TypeError)


class _Ask:
    """One job asked for, with where its outcome goes (a thread's event or a loop's future)."""

    __slots__ = ("done", "error", "future", "job", "loop")

    def __init__(
        self,
        job: Job,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.job = job
        self.loop = loop
        self.future = future
        self.done = threading.Event() if loop is None else None
        self.error: BaseException | None = None


class Committer:
    """Commits jobs on the connection ``db`` on one thread (see the module docstring).

    ``committed(n)`` is told, on that thread, how many jobs each transaction committed."""

    def __init__(self, db: Connection, committed: Callable[[int], None]) -> None:
        self._db = db
        self._committed = committed
        self._asks: queue.SimpleQueue[_Ask | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.in_flight = 0  # writes asked from the loop not yet handed back (counted on its thread)

    # -- asking ----------------------------------------------------------------------------------

    def call(self, job: Job) -> None:
        """Run ``job`` in a transaction and wait until it is committed; raise what it raised."""
        if threading.current_thread() is self._thread:  # pragma: no cover - a job writing again
            raise RuntimeError("a state write from inside a state write")
        ask = _Ask(job)
        self._put(ask)
        assert ask.done is not None
        ask.done.wait()
        if ask.error is not None:
            raise ask.error

    async def call_async(self, job: Job) -> None:
        """``call``, awaited on the event loop (shielded: the write always completes)."""
        future = self.submit(job)
        with anyio.CancelScope(shield=True):
            await future
        future.result()

    def submit(self, job: Job) -> asyncio.Future[None]:
        """Ask for ``job`` from the event loop without waiting: the future is done once it is
        committed (or failed). Writes are committed in the order asked, so a later write of the
        same row (awaited or not) lands after this one."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._put(_Ask(job, loop, future))
        self.in_flight += 1
        future.add_done_callback(self._landed)
        return future

    def _landed(self, future: asyncio.Future[None]) -> None:
        self.in_flight -= 1

    def _put(self, ask: _Ask) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError("the state database is closed")
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="pagent-committer", daemon=True)
                self._thread.start()
            self._asks.put(ask)

    def close(self) -> None:
        """Commit what was asked for, then end the thread (no write is taken afterwards)."""
        with self._lock:
            self._closed = True
            thread = self._thread
            if thread is not None:
                self._asks.put(None)
        if thread is not None:
            thread.join()

    # -- the thread ------------------------------------------------------------------------------

    def _serve(self) -> None:
        while True:
            first = self._asks.get()
            if first is None:
                return
            batch = [first]
            end = False
            while True:  # everything already waiting goes into the same transaction
                try:
                    more = self._asks.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    end = True
                    break
                batch.append(more)
            self._commit(batch)
            _settle(batch)
            if end:
                return

    def _commit(self, batch: list[_Ask]) -> None:
        """Commit ``batch`` in one transaction, or, if that fails, each job in its own."""
        if len(batch) > 1:
            try:
                self._together(batch)
            except Exception:  # the whole transaction failed: each job on its own, below
                with contextlib.suppress(Exception):
                    self._db.execute("ROLLBACK")
                for ask in batch:
                    ask.error = None
            else:
                return
        for ask in batch:
            try:
                transaction(self._db, ask.job)
            except BaseException as exc:  # handed to the caller as it is
                ask.error = exc
                continue
            self._committed(1)

    def _together(self, batch: list[_Ask]) -> None:
        self._db.execute("BEGIN IMMEDIATE")
        for ask in batch:
            self._db.execute("SAVEPOINT job")
            try:
                ask.job()
            except _JOB_ERRORS as exc:
                ask.error = exc
                self._db.execute("ROLLBACK TO job")
            self._db.execute("RELEASE job")
        self._db.execute("COMMIT")
        self._committed(sum(1 for ask in batch if ask.error is None))


def transaction(db: Connection, job: Job) -> None:
    """Run ``job`` in a transaction of its own on ``db``: committed, or rolled back and raised."""
    db.execute("BEGIN IMMEDIATE")
    try:
        job()
    except BaseException:
        # SQLite may have rolled back already (a full disk does): then there is nothing to undo.
        with contextlib.suppress(Exception):
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _settle(batch: list[_Ask]) -> None:
    """Hand every outcome of ``batch`` to its caller: one wake-up per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Ask]] = {}
    for ask in batch:
        if ask.loop is None:
            assert ask.done is not None
            ask.done.set()
        else:
            by_loop.setdefault(ask.loop, []).append(ask)
    for loop, asks in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(_settle_futures, asks)


def _settle_futures(asks: list[_Ask]) -> None:
    for ask in asks:
        future: Any = ask.future
        if future.cancelled():
            continue
        if ask.error is not None:
            future.set_exception(ask.error)
        else:
            future.set_result(None)
