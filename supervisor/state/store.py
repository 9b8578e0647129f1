"""The durable record of runs, task runs and attempts: one SQLite file in WAL mode.

Each method is one transaction, committed before it returns, so the runner can persist a
transition *before* acting on it. Writes are committed on one thread of their own
(``supervisor.state.committer``), through a connection of its own: writes that come together
share a transaction, each as if it were alone, and the attempts' writes have ``*_async``
variants the event loop awaits instead of waiting for SQLite; reads go through this thread's
connection and see every write that has returned.

WAL with ``synchronous=NORMAL`` survives a crash of the process at any instant (the database is
never left half-written); a power loss may lose the last transitions, which recovery then treats
like a crash. Readers (``pagent status``) never block the writer. The log is copied into the
database by a thread of its own (``supervisor.state.checkpoint``), not inside a commit of the
writer's.

Every SQLite error becomes a ``StateError`` naming the file and what to do (a corrupt file: move
it aside; a full disk: free space; a read-only directory), never a traceback. Readers that
change nothing (``pagent status``, ``logs``, ``runs``, ``report``) open the file read-only
(``Store(path, read_only=True)``), so they work on a read-only plan directory too.
"""

from __future__ import annotations

import dataclasses
import functools
import sqlite3
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from supervisor.reasons import Reason
from supervisor.state import checkpoint
from supervisor.state.committer import Committer, Job, transaction
from supervisor.state.connection import Connection, connect, state_error
from supervisor.state.records import AttemptRecord, RunRecord, RunStatus, TaskRecord, TaskState

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    plan_key TEXT NOT NULL,
    plan_name TEXT NOT NULL,
    plan_path TEXT NOT NULL,
    started_at REAL NOT NULL,
    status TEXT NOT NULL,
    ended_at REAL,
    exit_code INTEGER,
    pid INTEGER,
    pid_started REAL,
    repo TEXT,
    base_commit TEXT,
    agent_version TEXT,
    note TEXT,
    integration_branch TEXT,
    overlaps TEXT,
    integration TEXT,
    publish TEXT,
    notifications TEXT,
    worktrees TEXT,
    integration_tip TEXT,
    moved_refs TEXT,
    sandbox TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_plan ON runs (plan_key, run_id);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    wave INTEGER NOT NULL,
    wave_name TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    branch TEXT,
    worktree TEXT,
    reason TEXT,
    exit_code INTEGER,
    started_at REAL,
    ended_at REAL,
    start_commit TEXT,
    diff TEXT,
    conflicts TEXT,
    publish TEXT,
    tip TEXT,
    set_up_at REAL,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs (run_id) ON DELETE CASCADE,
    task_id TEXT NOT NULL,
    number INTEGER NOT NULL,
    started_at REAL NOT NULL,
    log_path TEXT NOT NULL,
    cookie TEXT NOT NULL,
    ended_at REAL,
    pid INTEGER,
    pid_started REAL,
    exit_code INTEGER,
    reason TEXT,
    cpu_percent REAL,
    rss INTEGER,
    procs INTEGER,
    last_output_at REAL,
    sampled_at REAL,
    note TEXT,
    session_id TEXT,
    turns INTEGER,
    cost_usd REAL,
    api_ms REAL,
    tokens_in INTEGER,
    tokens_out INTEGER,
    detail TEXT,
    ref TEXT,
    result TEXT,
    model TEXT,
    answer TEXT,
    PRIMARY KEY (run_id, task_id, number)
);
"""

R = TypeVar("R", RunRecord, TaskRecord, AttemptRecord)
_TABLES = (("runs", RunRecord), ("tasks", TaskRecord), ("attempts", AttemptRecord))


class Store:
    """The state database of one plan directory (``.pagent/state.db``)."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        self.read_only = read_only
        self._pending: list[Job] | None = None  # the jobs of the ``batch`` being written
        self._selects = _SELECTS
        self._commits = 0
        self._checkpointer: checkpoint.Checkpointer | None = None
        self._committer: Committer | None = None
        try:
            if not read_only:
                path.parent.mkdir(parents=True, exist_ok=True)
            self._db = Connection(connect(path, read_only), path)
        except (OSError, sqlite3.Error) as exc:
            raise state_error(path, exc) from None
        self._writer = self._db  # the connection writes go through (the committer's, once open)
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        if self.read_only:
            self._selects = self._read_only_selects()
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        # Checkpoints on a thread of their own (``supervisor.state.checkpoint``).
        self._db.execute(f"PRAGMA wal_autocheckpoint={checkpoint.FALLBACK}")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            # executescript commits on its own; every statement is idempotent.
            self._db.executescript(_SCHEMA + f"PRAGMA user_version={SCHEMA_VERSION};")
        self._add_missing_columns()
        # Writes from now on: on the committer's thread, through a connection of its own (this
        # one stays the readers'); ``supervisor.state.committer``.
        try:
            writer = Connection(connect(self.path, False, threads=True), self.path)
        except (OSError, sqlite3.Error) as exc:
            raise state_error(self.path, exc) from None
        try:
            writer.execute("PRAGMA synchronous=NORMAL")
            writer.execute(f"PRAGMA wal_autocheckpoint={checkpoint.FALLBACK}")
            writer.execute("PRAGMA foreign_keys=ON")
        except BaseException:
            writer.close()
            raise
        self._writer = writer
        self._checkpointer = checkpoint.Checkpointer(self.path)
        self._committer = Committer(writer, self._committed)

    def _columns(self, table: str) -> set[str]:
        return {row[1] for row in self._db.fetchall(f"PRAGMA table_info({table})")}

    def _add_missing_columns(self) -> None:
        """Bring a database written by an older version up to date: columns are only ever added."""
        for table, cls in _TABLES:
            have = self._columns(table)
            for field in dataclasses.fields(cls):
                if field.name not in have:
                    self._db.execute(f"ALTER TABLE {table} ADD COLUMN {field.name}")

    def _read_only_selects(self) -> dict[type[Any], str]:
        """The select lists for a database that cannot be brought up to date: a column an older
        version did not have reads as NULL. A file without pagent's tables is not a database."""
        selects: dict[type[Any], str] = {}
        for table, cls in _TABLES:
            have = self._columns(table)
            if not have:
                raise state_error(self.path, sqlite3.DatabaseError(f"no such table: {table}"))
            names = _FIELD_NAMES[cls]
            selects[cls] = ", ".join(name if name in have else f"NULL AS {name}" for name in names)
        return selects

    def close(self) -> None:
        """Commit what was asked for and close the connections; the file stays (with everything
        in it: the last connection to close checkpoints the log)."""
        if self._committer is not None:
            self._committer.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        if self._writer is not self._db:
            self._writer.close()
        self._db.close()

    def _committed(self, jobs: int) -> None:
        # On the committer's thread: a checkpoint every ``checkpoint.EVERY`` writes.
        before, self._commits = self._commits, self._commits + jobs
        if before // checkpoint.EVERY != self._commits // checkpoint.EVERY and self._checkpointer is not None:
            self._checkpointer.nudge()

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Make every change inside the block one transaction (all of them, or none).

        The changes are written when the block ends (reads inside it see the database as it was
        before it); a block that raises writes nothing."""
        if self._pending is not None:
            yield
            return
        jobs: list[Job] = []
        self._pending = jobs
        try:
            yield
        finally:
            self._pending = None

        def all_of_them() -> None:
            for job in jobs:
                job()

        self._write(all_of_them)

    def _write(self, job: Job) -> None:
        """Commit ``job`` (inside ``batch``: with the batch), waiting for it."""
        if self._pending is not None:
            self._pending.append(job)
        elif self._committer is not None:
            self._committer.call(job)
        else:  # a read-only store: SQLite refuses, with the error a person reads
            transaction(self._db, job)

    @property
    def writes_in_flight(self) -> int:
        """How many awaited writes are being committed now (0 for a read-only store)."""
        return 0 if self._committer is None else self._committer.in_flight

    async def _write_async(self, job: Job) -> None:
        """``_write``, awaited: the event loop goes on while the committer writes."""
        if self._committer is None or self._pending is not None:
            self._write(job)
        else:
            await self._committer.call_async(job)

    # -- writing ---------------------------------------------------------------------------

    def create_run(self, run: RunRecord, tasks: list[TaskRecord]) -> None:
        """Insert a run and all of its task runs in one transaction."""

        def job() -> None:
            self._insert("runs", run)
            for task in tasks:
                self._insert("tasks", task)

        self._write(job)

    def add_tasks(self, tasks: list[TaskRecord]) -> None:
        """Insert task runs into an existing run (tasks added to the plan before a retry)."""

        def job() -> None:
            for task in tasks:
                self._insert("tasks", task)

        self._write(job)

    def update_run(self, run_id: str, **changes: Any) -> None:
        """Change columns of one run."""
        self._update("runs", {"run_id": run_id}, changes)

    def update_task(self, run_id: str, task_id: str, **changes: Any) -> None:
        """Change columns of one task run."""
        self._update("tasks", {"run_id": run_id, "task_id": task_id}, changes)

    def add_attempt(self, attempt: AttemptRecord, **task_changes: Any) -> None:
        """Insert an attempt and, in the same transaction, change its task run."""
        self._write(self._adding(attempt, task_changes))

    async def add_attempt_async(
        self, attempt: AttemptRecord, *, before: Callable[[], None] | None = None, **task_changes: Any
    ) -> None:
        """``add_attempt``, awaited on the event loop. ``before``: called first, on the thread
        that writes, within the transaction (it may run again if the transaction is retried on
        its own, so it must do its work once); what it raises fails the write."""
        await self._write_async(self._adding(attempt, task_changes, before))

    def _adding(
        self,
        attempt: AttemptRecord,
        task_changes: Mapping[str, Any],
        before: Callable[[], None] | None = None,
    ) -> Job:
        def job() -> None:
            if before is not None:
                before()
            self._insert("attempts", attempt)
            if task_changes:
                self._update_in_tx(
                    "tasks", {"run_id": attempt.run_id, "task_id": attempt.task_id}, task_changes
                )

        return job

    def update_attempt(self, run_id: str, task_id: str, number: int, **changes: Any) -> None:
        """Change columns of one attempt."""
        self._update("attempts", {"run_id": run_id, "task_id": task_id, "number": number}, changes)

    def update_attempt_soon(self, run_id: str, task_id: str, number: int, **changes: Any) -> Awaitable[None]:
        """``update_attempt``, asked from the event loop without waiting for it: done (or failed)
        once committed, before any later write (a read-only store writes, and fails, at once)."""
        key = {"run_id": run_id, "task_id": task_id, "number": number}
        job = partial(self._update_in_tx, "attempts", key, changes)
        if self._committer is None or self._pending is not None:
            self._write(job)
            return _done()
        return self._committer.submit(job)

    def finish_attempt(
        self, attempt: AttemptRecord, attempt_changes: Mapping[str, Any], task_changes: Mapping[str, Any]
    ) -> None:
        """End an attempt and move its task run on, atomically."""
        key = {"run_id": attempt.run_id, "task_id": attempt.task_id, "number": attempt.number}
        self._write(self._finishing(key, attempt_changes, task_changes))

    async def finish_attempt_async(
        self, key: Mapping[str, Any], attempt_changes: Mapping[str, Any], task_changes: Mapping[str, Any]
    ) -> None:
        """``finish_attempt`` of the attempt ``key`` (its run_id, task_id and number), awaited on
        the event loop."""
        await self._write_async(self._finishing(key, attempt_changes, task_changes))

    def _finishing(
        self, key: Mapping[str, Any], attempt_changes: Mapping[str, Any], task_changes: Mapping[str, Any]
    ) -> Job:
        task = {"run_id": key["run_id"], "task_id": key["task_id"]}

        def job() -> None:
            self._update_in_tx("attempts", key, attempt_changes)
            self._update_in_tx("tasks", task, task_changes)

        return job

    def delete_run(self, run_id: str) -> None:
        """Forget a run, its task runs and its attempts (retention)."""

        def job() -> None:
            for table in ("attempts", "tasks", "runs"):
                self._writer.execute(f"DELETE FROM {table} WHERE run_id = ?", (run_id,))

        self._write(job)

    # -- reading ---------------------------------------------------------------------------

    def run(self, run_id: str) -> RunRecord | None:
        """The run ``run_id``, or ``None``."""
        found = self._select(RunRecord, "runs", "WHERE run_id = ?", (run_id,))
        return found[0] if found else None

    def runs(self, plan_key: str) -> list[RunRecord]:
        """Every run of a plan, oldest first."""
        # Run ids sort by time only to the second (then by a random suffix): start time first.
        return self._select(RunRecord, "runs", "WHERE plan_key = ? ORDER BY started_at, run_id", (plan_key,))

    def latest_run(self, plan_key: str) -> RunRecord | None:
        """The newest run of a plan, or ``None``."""
        found = self._select(
            RunRecord, "runs", "WHERE plan_key = ? ORDER BY started_at DESC, run_id DESC LIMIT 1", (plan_key,)
        )
        return found[0] if found else None

    def state_counts(self, run_id: str) -> dict[str, int]:
        """How many task runs of a run are in each state."""
        sql = "SELECT state, COUNT(*) FROM tasks WHERE run_id = ? GROUP BY state"
        rows = self._db.fetchall(sql, (run_id,))
        return {row[0]: row[1] for row in rows}

    def run_cost(self, run_id: str) -> float | None:
        """The summed cost of a run's attempts that reported one; ``None`` if none did."""
        (row,) = self._db.fetchall(
            "SELECT SUM(cost_usd) FROM attempts WHERE run_id = ? AND cost_usd IS NOT NULL", (run_id,)
        )
        return None if row[0] is None else float(row[0])

    def success_durations(self, plan_key: str, *, runs: int = 10) -> dict[str, list[float]]:
        """Per task id, how many seconds each successful attempt took (start to end, checks
        included), newest first, over the newest ``runs`` runs of a plan: the scheduler's history.

        One query over the attempts primary key of those runs only, however long the plan's
        history: a 10,000-task plan with ten runs is read in well under a second."""
        sql = (
            "SELECT a.task_id, a.ended_at - a.started_at FROM attempts AS a"
            " JOIN (SELECT run_id FROM runs WHERE plan_key = ? ORDER BY started_at DESC LIMIT ?) AS r"
            " ON a.run_id = r.run_id"
            " WHERE a.reason = ? AND a.ended_at IS NOT NULL ORDER BY a.started_at DESC"
        )
        found: dict[str, list[float]] = {}
        for task_id, seconds in self._db.fetchall(sql, (plan_key, runs, Reason.OK.value)):
            found.setdefault(task_id, []).append(max(0.0, float(seconds)))
        return found

    def tasks(self, run_id: str) -> list[TaskRecord]:
        """The task runs of a run, in wave order then plan order."""
        return self._select(TaskRecord, "tasks", "WHERE run_id = ? ORDER BY wave, rowid", (run_id,))

    def attempts(self, run_id: str, task_id: str | None = None) -> list[AttemptRecord]:
        """The attempts of a run (or of one task of it), in order."""
        if task_id is None:
            tail = "WHERE run_id = ? ORDER BY task_id, number"
            return self._select(AttemptRecord, "attempts", tail, (run_id,))
        return self._select(
            AttemptRecord, "attempts", "WHERE run_id = ? AND task_id = ? ORDER BY number", (run_id, task_id)
        )

    def open_attempts(self, run_id: str) -> list[AttemptRecord]:
        """Attempts of a run that have not ended (their process may still be alive)."""
        return self._select(AttemptRecord, "attempts", "WHERE run_id = ? AND ended_at IS NULL", (run_id,))

    # -- helpers ---------------------------------------------------------------------------

    def _select(self, cls: type[R], table: str, tail: str, params: Sequence[Any]) -> list[R]:
        """Records of ``cls`` from ``table`` (``tail``: WHERE and ORDER BY clauses).

        The columns are named in the record's field order and come back as plain tuples, so a
        row becomes a record in one call: a 10,000-task run is read in a few tens of ms.
        """
        rows = self._db.fetchall(f"SELECT {self._selects[cls]} FROM {table} {tail}", params)
        enums = _ENUM_POSITIONS[cls]
        if not enums:
            return [cls(*row) for row in rows]
        records = []
        for row in rows:
            values = list(row)
            for i, enum in enums:
                values[i] = enum(values[i])
            records.append(cls(*values))
        return records

    def _insert(self, table: str, record: RunRecord | TaskRecord | AttemptRecord) -> None:
        # Inside a job. Not dataclasses.asdict: that deep-copies every value, and records hold
        # only scalars.
        names = _FIELD_NAMES[type(record)]
        self._writer.execute(_insert_sql(table, names), [getattr(record, name) for name in names])

    def _update(self, table: str, key: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        if changes:
            self._write(partial(self._update_in_tx, table, key, dict(changes)))

    def _update_in_tx(self, table: str, key: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        # Inside a job. Column names come from our own code, never from input: safe to format in.
        if not changes:
            # "UPDATE ... SET WHERE" is a syntax error; an empty change still needs its row.
            where = " AND ".join(f"{column} = ?" for column in key)
            row = self._writer.execute(f"SELECT 1 FROM {table} WHERE {where}", list(key.values())).fetchone()
            if row is None:
                raise LookupError(f"no row in {table} for {dict(key)}")
            return
        cursor = self._writer.execute(
            _update_sql(table, tuple(changes), tuple(key)), [*changes.values(), *key.values()]
        )
        if cursor.rowcount != 1:
            raise LookupError(f"no row in {table} for {dict(key)}")


@functools.lru_cache(maxsize=8)
def _insert_sql(table: str, names: tuple[str, ...]) -> str:
    """The INSERT of a record's columns (one text per table: SQLite's statement cache keeps it)."""
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})"


@functools.lru_cache(maxsize=256)
def _update_sql(table: str, columns: tuple[str, ...], key: tuple[str, ...]) -> str:
    """The UPDATE of ``columns`` of the row ``key`` names (an attempt's few kinds of change)."""
    sets = ", ".join(f"{column} = ?" for column in columns)
    where = " AND ".join(f"{column} = ?" for column in key)
    return f"UPDATE {table} SET {sets} WHERE {where}"


_FIELD_NAMES: dict[type[Any], tuple[str, ...]] = {
    cls: tuple(field.name for field in dataclasses.fields(cls))
    for cls in (RunRecord, TaskRecord, AttemptRecord)
}
_ENUMS: dict[str, type[TaskState] | type[RunStatus]] = {"state": TaskState, "status": RunStatus}
_SELECTS: dict[type[Any], str] = {cls: ", ".join(names) for cls, names in _FIELD_NAMES.items()}
_ENUM_POSITIONS: dict[type[Any], list[tuple[int, type[TaskState] | type[RunStatus]]]] = {
    cls: [(i, _ENUMS[name]) for i, name in enumerate(names) if name in _ENUMS]
    for cls, names in _FIELD_NAMES.items()
}


async def _done() -> None:
    """An awaitable of a write that was made at once."""
