"""The SQLite connection of the state database, with every error turned into one line.

``connect`` opens the file (read-only ones with ``mode=ro``, or ``immutable=1`` where SQLite
cannot create the WAL's shared-memory file beside it: a read-only directory); ``Connection``
turns every ``sqlite3.Error`` into a ``StateError`` that names the file and says what to do.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from supervisor.errors import StateError


def state_error(path: Path, exc: sqlite3.Error | OSError) -> StateError:
    """The one line a person reads for an SQLite (or file) error on the state database ``path``."""
    text = str(exc.strerror if isinstance(exc, OSError) and exc.strerror else exc)
    lowered = text.lower()
    if "disk is full" in lowered or "no space left" in lowered or "quota" in lowered:
        return StateError(f"{path}: the disk is full ({text}); free some space", disk_full=True)
    if isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in lowered or "malformed" in lowered or "no such table" in lowered
    ):
        return StateError(
            f"{path} is not a usable pagent database ({text}); move it aside (with its -wal and -shm "
            "files): the next pagent-run starts a new one"
        )
    if "readonly" in lowered or "read-only" in lowered or "unable to open" in lowered:
        return StateError(f"cannot write {path}: {text} (is the plan's directory read-only?)")
    return StateError(f"{path}: {text}")


# Errors of pagent's own SQL (a duplicate key, a wrong statement) are bugs and stay what they are.
_BUGS = (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError)


class Connection:
    """An SQLite connection whose every error the file or the disk caused (corrupt, full,
    read-only, locked) is a ``StateError`` naming the file."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db, self._path = db, path

    def execute(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, params)
        except _BUGS:
            raise
        except sqlite3.Error as exc:
            raise state_error(self._path, exc) from None

    def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._db.execute(sql, params).fetchall()
        except _BUGS:
            raise
        except sqlite3.Error as exc:
            raise state_error(self._path, exc) from None

    def executescript(self, script: str) -> None:
        try:
            self._db.executescript(script)
        except _BUGS:
            raise
        except sqlite3.Error as exc:
            raise state_error(self._path, exc) from None

    def close(self) -> None:
        self._db.close()


def connect(path: Path, read_only: bool, *, threads: bool = False) -> sqlite3.Connection:
    """Open ``path`` (``threads``: for use on another thread than this one, the committer's).

    Read-only: where the directory can be written, an ordinary connection that refuses to write
    (``query_only``: it leaves no -wal/-shm files behind); elsewhere ``mode=ro``, or, where SQLite
    cannot make the WAL's shared memory file either (a read-only directory), ``immutable=1``
    (nothing can change the file there)."""
    # isolation_level=None: we open transactions ourselves, one per method.
    if not read_only:
        return sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=not threads)
    if os.access(path.parent, os.W_OK) and os.access(path, os.W_OK):
        db = sqlite3.connect(path, isolation_level=None, timeout=30.0)
        db.execute("PRAGMA query_only=ON")
        return db
    uri = "file:" + urllib.parse.quote(str(path.absolute()))
    db = sqlite3.connect(f"{uri}?mode=ro", uri=True, isolation_level=None, timeout=30.0)
    try:
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
    except sqlite3.OperationalError:
        db.close()
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None, timeout=30.0)
    return db
