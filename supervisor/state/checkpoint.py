"""Copying the state database's write-ahead log back into the database, on a thread of its own.

In WAL mode a commit only appends to the log; from time to time the log's pages are copied into
the database file (a *checkpoint*), which syncs both files to the disk. SQLite does that inside
the commit that crosses its threshold, in the committing thread: for pagent that is the event
loop's, which then waits for two fsyncs of a busy disk while every attempt waits for it. Here
the store turns SQLite's own checkpoints off and nudges this thread every ``EVERY`` commits; it
checkpoints through a connection of its own (``PASSIVE``: never waiting for, nor holding up, the
writer or a reader). What is durable, and when, does not change: a commit is durable in the log
(``synchronous = NORMAL``), the checkpoint only moves it. Should this thread fall behind, SQLite
still checkpoints by itself past ``FALLBACK`` pages.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from pathlib import Path

EVERY = 100  # commits between checkpoints (about 300 pages of the log for pagent's writes)
FALLBACK = 10_000  # pages of log after which the writer checkpoints by itself all the same


class Checkpointer:
    """Checkpoints the database at ``path`` when nudged (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def nudge(self) -> None:
        """A checkpoint is due: have one made soon (starts the thread the first time)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._serve, name="pagent-checkpoint", daemon=True)
            self._thread.start()
        self._wake.set()

    def _serve(self) -> None:
        try:
            db = sqlite3.connect(self._path, isolation_level=None, timeout=1.0)
        except sqlite3.Error:
            return  # the writer's own checkpoints past FALLBACK remain
        try:
            while True:
                self._wake.wait()
                self._wake.clear()
                if self._closed:
                    return
                with contextlib.suppress(sqlite3.Error):  # a full disk, a busy file: next time
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the thread (after the checkpoint it is making, if any)."""
        self._closed = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
