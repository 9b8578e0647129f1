"""The state database when the file or the disk misbehaves (issue 12): a corrupt ``state.db``, a
read-only reader, a full disk, a state directory that cannot be made. Each is one
``StateError`` line naming the file and what to do, never an sqlite3 traceback. Real files;
``/dev/full`` is the real full disk."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from supervisor.errors import EXIT_USAGE, StateError
from supervisor.state.connection import state_error
from supervisor.state.layout import Layout
from supervisor.state.lock import PlanLock
from supervisor.state.records import RunRecord
from supervisor.state.store import Store


def a_run(run_id: str = "r1") -> RunRecord:
    return RunRecord(run_id, "plan.toml", "p", "/p/plan.toml", started_at=1.0)


@pytest.mark.parametrize("read_only", [False, True])
def test_a_corrupt_state_db_is_named_with_what_to_do(tmp_path: Path, read_only: bool) -> None:
    path = tmp_path / "state.db"
    path.write_bytes(b"this is not a database\n" * 100)
    with pytest.raises(StateError) as caught:
        Store(path, read_only=read_only)
    message = str(caught.value)
    assert str(path) in message
    assert "move it aside" in message
    assert "\n" not in message
    assert caught.value.exit_code == EXIT_USAGE


def test_a_read_only_store_reads_and_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    writer = Store(path)
    writer.create_run(a_run(), [])
    writer.close()  # the last connection: the WAL is checkpointed and removed
    before = sorted(p.name for p in tmp_path.iterdir())
    reader = Store(path, read_only=True)
    assert reader.run("r1") is not None
    with pytest.raises(StateError, match="readonly"):
        reader.update_run("r1", note="x")
    reader.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert Store(path).run("r1").note is None  # type: ignore[union-attr]


def test_a_read_only_store_reads_an_older_database_without_upgrading_it(tmp_path: Path) -> None:
    """A database written before a column existed: read-only readers see NULL there, and
    the file is not altered."""
    path = tmp_path / "state.db"
    writer = Store(path)
    writer.create_run(a_run(), [])
    writer.close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE runs DROP COLUMN notifications")
    db.commit()
    db.close()
    reader = Store(path, read_only=True)
    assert reader.run("r1").notifications is None  # type: ignore[union-attr]
    reader.close()
    db = sqlite3.connect(path)
    assert "notifications" not in {row[1] for row in db.execute("PRAGMA table_info(runs)")}
    db.close()


def test_a_file_without_pagents_tables_is_not_a_pagent_database(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE other (x)")
    db.commit()
    db.close()
    with pytest.raises(StateError, match="not a usable pagent database"):
        Store(path, read_only=True)


def test_a_full_disk_is_said_as_such() -> None:
    found = state_error(Path("/p/state.db"), sqlite3.OperationalError("database or disk is full"))
    assert found.disk_full
    assert "free some space" in str(found)
    assert not state_error(Path("/p/state.db"), sqlite3.OperationalError("database is locked")).disk_full


def test_a_bug_in_pagents_own_sql_stays_a_bug(tmp_path: Path) -> None:
    store = Store(tmp_path / "state.db")
    store.create_run(a_run(), [])
    with pytest.raises(sqlite3.IntegrityError):
        store.create_run(a_run(), [])


def test_a_state_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "plan-dir").write_text("a file where the plan's directory should be\n")
    layout = Layout(tmp_path / "plan-dir" / ".pagent", "plan.toml")
    with pytest.raises(StateError, match="cannot write pagent's state"):
        layout.ensure()
    with pytest.raises(StateError, match="cannot take the lock"):
        PlanLock(layout.lock_file).acquire("plan.toml")
    with pytest.raises(StateError):
        Store(layout.database)
