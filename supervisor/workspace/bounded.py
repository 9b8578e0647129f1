"""Running one outside command (git push, gh, a notification hook) with a hard bound on its time.

The command gets its own session and process group; when the bound passes, the whole group is
killed, hooks and helpers included, so nothing it started outlives it. Its output goes to
temporary files, not pipes: a grandchild that keeps a pipe open cannot make the caller wait.
Blocking: call it from a worker thread when an event loop is running.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_KEEP = 64 * 1024  # of each stream, the tail: enough for any message we parse or report


@dataclass(frozen=True)
class Finished:
    """How a bounded command ended: ``code`` is ``None`` when it timed out or could not start."""

    code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False
    error: str | None = None  # could not start: one line

    @property
    def ok(self) -> bool:
        """Whether the command ran and exited 0."""
        return self.code == 0

    def problem(self, what: str) -> str:
        """One line saying why the command did not succeed (its last stderr line, usually)."""
        if self.error is not None:
            return self.error
        if self.timed_out:
            return f"{what}: no answer in time (stopped)"
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        last = lines[-1].strip() if lines else ""
        return f"{what}: exit {self.code}" + (f": {last[:300]}" if last else "")


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
) -> Finished:
    """Run ``argv`` (no shell) to its end or for at most ``timeout`` seconds, then kill its group.

    ``stdin`` is given as a file (never blocks on a reader that does not read); without it the
    command reads /dev/null. Never raises for the command's own failures.
    """
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryFile() as given,
    ):
        if stdin is not None:
            given.write(stdin)
            given.seek(0)
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=None if env is None else dict(env),
                stdin=given if stdin is not None else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        except OSError as exc:
            return Finished(None, "", "", error=f"cannot start {argv[0]}: {exc.strerror or exc}")
        timed_out = False
        try:
            proc.wait(timeout=max(timeout, 0.0))
        except subprocess.TimeoutExpired:
            timed_out = True
        # Also after a normal exit: a hook's background helper must not outlive the command.
        _kill_group(proc.pid)
        code = proc.wait()
        return Finished(None if timed_out else code, _tail(out), _tail(err), timed_out=timed_out)


def _kill_group(pgid: int) -> None:
    """SIGKILL every process left in group ``pgid`` (it may already be empty)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(stream: IO[bytes]) -> str:
    """The last ``_KEEP`` bytes written to ``stream``, decoded leniently."""
    size = stream.seek(0, os.SEEK_END)
    stream.seek(max(0, size - _KEEP))
    return stream.read().decode("utf-8", errors="replace")
