"""The guardian: one small process per supervisor that stops its children's process groups when
the supervisor dies, however it dies.

Every process pagent starts (an attempt's agent, a git call) leads a session and process group
of its own. Before the guardian, each was started through util-linux ``setpriv --pdeathsig TERM``
(``supervisor.pdeathsig``), so that Linux would SIGTERM it when the supervisor died: one more
exec per process, about 1 ms of CPU each on a small VM (measured: 1.0 s of the children's CPU
for 1000 no-op attempts), and the signal reached the main process only. Now one process does it
for all of them:

- The supervisor starts it once (``GUARDIAN.start()``), in a session of its own, with the read
  end of a pipe as its stdin; the supervisor keeps the only write end (close-on-exec: no child
  inherits it). ``watch(pid)`` tells it a process group to stop should the supervisor die,
  ``forget(pid)`` that the group is over (one write of a few bytes each, atomic on a pipe).
  The watch line carries the leader's start time where the supervisor knows it (the launcher
  does, from its boot-clock readings around the start): the guardian then needs no look at
  /proc, and it names the very process, however late the guardian reads the line.
- When the supervisor's process ends -- SIGKILL, a crash, or an exit that left something
  running -- the kernel closes the write end and the guardian reads end-of-file. It then sends
  SIGTERM to every group it still watches, SIGKILL to what is left of them ``GRACE`` seconds
  later, and exits. A group whose leader's pid now names another process (its start time
  differs) is left alone: a pid that still leads a group cannot be handed out again.
- It ignores SIGINT, SIGTERM and SIGHUP (a Ctrl-C in the terminal, ``pkill pagent``: the
  supervisor stops its attempts itself then, and the guardian must outlive it to be of use).

What it adds to the parent-death signal: the whole group is stopped (the agent's helpers that
stayed in it too), and what ignores SIGTERM is killed. What it shares with it: a supervisor
killed in the instant between a process's start and its ``watch`` leaves that process to the
next run's recovery (which finds it by its cookie), and what left the group (``setsid``) was
never the signal's either (the next run's recovery finds it by cookie or ancestry, the
subreaper at the end of its attempt). What it cannot do: outlive a SIGKILL of its own. A
killed guardian is replaced by the supervisor as soon as a write finds its pipe broken (every
attempt's liveness tick writes an empty line to find out), and the new one is told every group
still watched; a supervisor SIGKILLed before that (``kill -9`` of both at once) leaves its
processes to the next run's recovery. After ``RESTARTS`` replacements the supervisor falls back
to ``setpriv`` for the processes it starts afterwards (``running`` turns false).

The module is also the guardian's program (``python -I -S guardian.py``): it imports only the
standard library, so it starts in a few milliseconds and needs no installed package.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

GRACE = 10.0  # seconds between the SIGTERM and the SIGKILL of a watched group, once orphaned
RESTARTS = 3  # killed guardians replaced per supervisor; then processes carry their own signal
_LATER_MAX = 64  # groups forgotten "later" at most, then told at once (64 lines: one atomic write)


class Guardian:
    """The supervisor's side: starts the guardian once per process and tells it what to watch.

    A guardian found killed (a write finds its pipe broken; ``check`` writes an empty line for
    that) is replaced at once by a new one, told every group still watched: the agents already
    running stay covered. After ``RESTARTS`` replacements (something keeps killing it) none is
    started again and ``running`` turns false."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # held for every write: a replacement closes the old fd
        self._proc: subprocess.Popen[bytes] | None = None
        self._fd: int | None = None
        self._tried = False
        self._watched: dict[int, int | None] = {}  # group -> its leader's start (clock ticks)
        self._restarts = 0
        self._started: list[Callable[[int], None]] = []
        self._later: list[int] = []  # groups forgotten, not yet told (``forget(later=True)``)

    @property
    def running(self) -> bool:
        """Whether the guardian is there to be told (started, and not given up on)."""
        return self._fd is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def on_start(self, callback: Callable[[int], None]) -> None:
        """Call ``callback(pid)`` for the guardian running now and for each that replaces it."""
        with self._lock:
            if callback in self._started:  # one launcher after another in the same process
                return
            self._started.append(callback)
            if self._proc is not None and self._fd is not None:
                callback(self._proc.pid)

    def start(self) -> bool:
        """Start the guardian unless it was (tried) already; whether it runs."""
        with self._lock:
            if self._tried:
                return self.running
            self._tried = True
            return self._launch()

    def watch(self, pid: int, started: int | None = None) -> bool:
        """Have the process group ``pid`` stopped should this process die; whether the guardian
        has it (``False``: it is not running, or its pipe is full). ``started``: when its
        leader started, in clock ticks since boot (field 22 of ``/proc/PID/stat``), where the
        caller knows it; otherwise the guardian reads it when it reads the line."""
        with self._lock:
            self._watched[pid] = started
            return self._tell(self._told() + _watch_line(pid, started))

    def forget(self, pid: int, *, later: bool = False) -> None:
        """The process group ``pid`` is over (its leader reaped, its tree stopped).

        ``later``: told with the next write (the next ``watch`` or ``check``, or once
        ``_LATER_MAX`` are waiting) instead of a write of its own, which the event loop's thread
        would pay for. Only for a group that is gone: a guardian that outlives this process
        before it is told finds no group of that leader's to stop (a pid that still leads a group
        is never handed out again, and one that names a new process is left alone)."""
        with self._lock:
            self._watched.pop(pid, None)
            if later and len(self._later) < _LATER_MAX:
                self._later.append(pid)
                return
            self._tell(self._told() + b"-%d\n" % pid)

    def _told(self) -> bytes:
        # Under the lock: the groups forgotten ``later``, as lines for the next write.
        if not self._later:
            return b""
        lines = b"".join(b"-%d\n" % pid for pid in self._later)
        self._later.clear()
        return lines

    def check(self) -> bool:
        """Whether a guardian runs; a killed one is replaced now (see the class docstring), a
        stopped one (SIGSTOP: it would read nothing, not even the end of the pipe) continued."""
        with self._lock:
            if self._proc is not None and self._fd is not None:
                with contextlib.suppress(OSError):
                    os.kill(self._proc.pid, signal.SIGCONT)  # our own child, not yet reaped
            return self._tell(self._told() or b"\n")  # an empty line the guardian ignores

    def _launch(self) -> bool:
        # Under the lock.
        program = __file__
        if not sys.platform.startswith("linux") or not Path(program).is_file() or not sys.executable:
            return False
        read, write = os.pipe()
        try:
            self._proc = subprocess.Popen(
                # argv[0] must stay the interpreter's path: Python finds its library from it.
                [sys.executable, "-I", "-S", program, str(GRACE)],
                stdin=read,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd="/",
                env={"PATH": os.defpath},
                start_new_session=True,
                close_fds=True,
            )
        except OSError:
            os.close(write)
            return False
        finally:
            os.close(read)
        os.set_blocking(write, False)  # a stopped guardian must never stop the supervisor
        self._fd = write
        for callback in self._started:
            callback(self._proc.pid)
        return True

    def _tell(self, line: bytes) -> bool:
        # Under the lock.
        fd = self._fd
        if fd is None:
            return False
        try:
            os.write(fd, line)
        except BlockingIOError:  # not reading (stopped?): this one goes unwatched
            return False
        except OSError:  # gone (killed): a new one is told everything watched, this line too
            return self._replace()
        return True

    def _replace(self) -> bool:
        # Under the lock: the killed guardian is reaped, a new one started and told every group.
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
        if self._proc is not None:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                self._proc.wait(timeout=1)
        if self._restarts >= RESTARTS:
            return False  # from now on the processes carry their own signal
        self._restarts += 1
        if not self._launch() or self._fd is None:
            return False
        try:  # a new pipe takes 64 KiB at once: thousands of groups
            os.write(
                self._fd, b"".join(_watch_line(pid, self._watched[pid]) for pid in sorted(self._watched))
            )
        except OSError:
            return self._replace()
        return True


def _watch_line(pid: int, started: int | None) -> bytes:
    return b"+%d\n" % pid if started is None else b"+%d %d\n" % (pid, started)


GUARDIAN = Guardian()


# -- the guardian's program --------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """Field 22 of ``/proc/PID/stat`` (when the process started, in clock ticks since boot)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            text = stat.read()
    except OSError:
        return None
    return text[text.rindex(b")") + 2 :].split()[19].decode()


def _alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except OSError as exc:
        return exc.errno == errno.EPERM
    return True


def _signal(group: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.killpg(group, signum)


def _serve(grace: float) -> None:
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, signal.SIG_IGN)
    watched: dict[int, str | None] = {}
    pending = b""
    while True:
        try:
            chunk = os.read(0, 65536)
        except InterruptedError:  # pragma: no cover - retried by Python itself
            continue
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        for line in lines:
            head, _, started = line[1:].partition(b" ")
            try:
                pid = int(head)
                start = str(int(started)) if started else None
            except ValueError:  # not the supervisor's (+PID [START] and -PID only): ignored
                continue
            if line[:1] == b"+" and pid > 1:
                watched[pid] = start if start is not None else _start_time(pid)
            elif line[:1] == b"-":
                watched.pop(pid, None)
    # The supervisor is gone: stop what it left running.
    groups = [
        pid for pid, started in watched.items() if started is not None and _start_time(pid) in (None, started)
    ]
    for group in groups:
        _signal(group, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = [group for group in groups if _alive(group)]
    for group in groups:
        _signal(group, signal.SIGKILL)


if __name__ == "__main__":
    _serve(float(sys.argv[1]) if len(sys.argv) > 1 else GRACE)
