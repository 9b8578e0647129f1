"""The state database's log is copied into the database file by the checkpoint thread, not
inside the writer's commits; closing the store leaves everything in the file."""

from __future__ import annotations

import sqlite3
import time
from contextlib import closing
from pathlib import Path

from supervisor.state import checkpoint
from supervisor.state.records import RunRecord, TaskRecord, TaskState
from supervisor.state.store import Store


def _in_file_alone(path: Path) -> int:
    """Tasks the database file itself says succeeded, its log not read (``immutable=1``)."""
    uri = f"file:{path}?immutable=1"
    with closing(sqlite3.connect(uri, uri=True)) as db:
        try:
            return int(db.execute("SELECT COUNT(*) FROM tasks WHERE state = 'succeeded'").fetchone()[0])
        except sqlite3.OperationalError:  # not even the schema has reached the file yet
            return 0
        except sqlite3.DatabaseError:  # read half-way through a checkpoint (immutable: no locks)
            return -1


def test_commits_reach_the_database_file_through_the_checkpoint_thread(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    store = Store(path)
    try:
        tasks = [TaskRecord("r", f"t{n}", 0, "w") for n in range(2 * checkpoint.EVERY)]
        store.create_run(RunRecord("r", "k", "n", "p", 1.0), tasks)
        # SQLite's own checkpoints would come only past FALLBACK pages: far more than this.
        assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == checkpoint.FALLBACK
        assert _in_file_alone(path) == 0
        for task in tasks:
            store.update_task("r", task.task_id, state=TaskState.SUCCEEDED)
        deadline = time.monotonic() + 10
        while _in_file_alone(path) < checkpoint.EVERY and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _in_file_alone(path) >= checkpoint.EVERY
    finally:
        store.close()
    assert _in_file_alone(path) == 2 * checkpoint.EVERY  # the last connection's checkpoint
    assert not (tmp_path / "state.db-wal").exists()
