"""How one git process of pagent's runs: its process group, its parent-death signal, its wait.

The mechanics under ``supervisor.workspace.git`` (which owns the policy: flags, environment,
time bound, messages). A git process leads a session and process group of its own, so that
killing the group kills git's helpers too; ``finish`` waits without reaping, so the group's id
cannot be reused before it is killed; ``Calls`` is the registry of the groups one worker-thread
job has running, so that cancelling the job kills them.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from typing import IO

from supervisor.pdeathsig import setpriv_prefix


class Calls:
    """The process groups of the git calls one ``in_thread`` job has running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()
        self.cancelled = False

    def add(self, pgid: int) -> bool:
        """Register a running git; False (and nothing registered) once cancelled."""
        with self._lock:
            if self.cancelled:
                return False
            self._groups.add(pgid)
            return True

    def discard(self, pgid: int) -> None:
        with self._lock:
            self._groups.discard(pgid)

    def cancel(self) -> None:
        """Kill every registered group now; every later call of the job fails at once."""
        with self._lock:
            self.cancelled = True
            for pgid in self._groups:
                kill_group(pgid)


def finish(proc: subprocess.Popen[bytes], calls: Calls | None, timeout: float) -> tuple[int, bool]:
    """Wait for ``proc`` (registered with ``calls`` meanwhile) at most ``timeout`` seconds, kill
    what is left of its group, reap it: its exit code and whether it timed out."""
    registered = calls.add(proc.pid) if calls is not None else True
    if not registered:
        kill_group(proc.pid)
    try:
        timed_out = not _wait_unreaped(proc, timeout)
    except BaseException:  # KeyboardInterrupt in a synchronous command: git must not outlive it
        kill_group(proc.pid)
        proc.wait()
        raise
    finally:
        if calls is not None:
            calls.discard(proc.pid)
    # Also after a normal exit: nothing git started may outlive the call. The group is still
    # ours: its leader is not reaped yet, so the id cannot have been reused.
    kill_group(proc.pid)
    return proc.wait(), timed_out


def _wait_unreaped(proc: subprocess.Popen[bytes], timeout: float) -> bool:
    """Wait until ``proc`` exits or ``timeout`` passes, without reaping it; True if it exited."""
    try:
        fd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (old kernel): poll, reaping it
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        return bool(poller.poll(max(0, int(timeout * 1000))))
    finally:
        os.close(fd)


def kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


@contextlib.contextmanager
def stdin_file(text: str | None) -> Iterator[IO[bytes] | int]:
    """What git reads on stdin: ``text`` in a file (a pipe could block both sides), or nothing."""
    if text is None:
        yield subprocess.DEVNULL
        return
    with tempfile.TemporaryFile() as given:
        given.write(text.encode("utf-8", "surrogateescape"))
        given.seek(0)
        yield given


def read_all(stream: IO[bytes]) -> bytes:
    stream.seek(0)
    return stream.read()


def pdeathsig_prefix() -> tuple[str, ...]:
    """``setpriv --pdeathsig TERM --`` where it works (``supervisor.pdeathsig``); otherwise
    nothing: a ``preexec_fn`` is unsafe in worker threads, and the cookie still lets recovery
    find the process."""
    return setpriv_prefix() or ()
