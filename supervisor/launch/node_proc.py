"""Process control on a node: a child subreaper that leaves nothing of an attempt alive.

The node program makes itself a child subreaper (``PR_SET_CHILD_SUBREAPER``): every process
the agent starts stays its descendant, even a double-forked daemon that called ``setsid``
(an orphan is re-parented to the nearest subreaper, not to init). So "every process of the
attempt" is simply every descendant, read from ``/proc``; ``stop_descendants`` sends SIGTERM
to all of them (again to those forked meanwhile), waits up to a grace, SIGKILLs the rest and
reaps them. The node program owns every child it reaps: ``Reaper`` collects exit statuses with
``waitpid(-1)`` so that the agent's own status is not lost to a blanket reap.

Standard library only: this module runs on the nodes.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import time
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_POLL = 0.05
_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICKS = os.sysconf("SC_CLK_TCK")


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, ctypes.c_ulong(value), 0, 0, 0) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def become_subreaper() -> None:
    """Make orphaned descendants of this process its children (Linux >= 3.4)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def die_with_parent(sig: int, parent: int) -> bool:
    """Ask for ``sig`` when the parent dies; False if ``parent`` is already gone (it may have
    died before the request took effect, which the kernel would never report)."""
    _prctl(PR_SET_PDEATHSIG, sig)
    return os.getppid() == parent


@dataclass(frozen=True)
class Proc:
    """One process as ``/proc`` shows it."""

    pid: int
    ppid: int
    state: str
    cpu_seconds: float  # user + system time of the process itself
    rss: int


def _stat(pid: int) -> Proc | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            raw = file.read()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: the fields start after the last ")".
    fields = raw[raw.rfind(b")") + 2 :].split()
    try:
        return Proc(
            pid=pid,
            ppid=int(fields[1]),
            state=fields[0].decode(),
            cpu_seconds=(int(fields[11]) + int(fields[12])) / _TICKS,
            rss=int(fields[21]) * _PAGE,
        )
    except (IndexError, ValueError):
        return None


def descendants(root: int) -> list[Proc]:
    """Every living process below ``root`` (zombies excluded), read from ``/proc`` now."""
    children: dict[int, list[Proc]] = {}
    with os.scandir("/proc") as entries:
        pids = [int(entry.name) for entry in entries if entry.name.isdigit()]
    for pid in pids:
        proc = _stat(pid)
        if proc is not None:
            children.setdefault(proc.ppid, []).append(proc)
    found: list[Proc] = []
    todo = [root]
    while todo:
        for proc in children.get(todo.pop(), ()):
            if proc.pid != root:
                todo.append(proc.pid)
                if proc.state not in ("Z", "X"):
                    found.append(proc)
    return found


class Reaper:
    """Reaps every child of this process; remembers the statuses of the ones it was told about."""

    def __init__(self) -> None:
        self._watched: dict[int, int | None] = {}

    def watch(self, pid: int) -> None:
        """Keep ``pid``'s wait status when it is reaped (it must be a child of this process)."""
        self._watched[pid] = None

    def reap(self) -> None:
        """Collect every child that has ended, without blocking."""
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid in self._watched:
                self._watched[pid] = status

    def status(self, pid: int) -> int | None:
        """``pid``'s wait status once it has been reaped, else ``None``."""
        return self._watched.get(pid)


def stop_descendants(root: int, reaper: Reaper, grace: float) -> set[int]:
    """SIGTERM every descendant of ``root``, SIGKILL what is left after ``grace``, reap them.

    Processes forked while this runs are found on the next look and get the same treatment.
    Returns the pids that were signalled. Gives up on processes that outlive SIGKILL by 5 s
    (uninterruptible sleep).
    """
    signalled: set[int] = set()
    deadline = time.monotonic() + grace
    sig = signal.SIGTERM
    kill_deadline = None
    while True:
        reaper.reap()
        alive = descendants(root)
        if not alive:
            return signalled
        now = time.monotonic()
        if sig == signal.SIGTERM and now >= deadline:
            sig = signal.SIGKILL
            kill_deadline = now + 5.0
        for proc in alive:
            if sig == signal.SIGKILL or proc.pid not in signalled:
                _kill(proc.pid, sig)
                if sig == signal.SIGTERM:
                    _kill(proc.pid, signal.SIGCONT)  # a stopped process would never see SIGTERM
                signalled.add(proc.pid)
        if kill_deadline is not None and now >= kill_deadline:
            return signalled
        time.sleep(_POLL)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except OSError as error:
        if error.errno != errno.ESRCH:
            raise


def tree_sample(root: int) -> dict[str, float | int]:
    """CPU seconds used by ``root``'s descendants so far (the reaped ones included), their
    resident memory and how many are alive: what the supervisor's stall detection needs."""
    alive = descendants(root)
    done = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = done.ru_utime + done.ru_stime + sum(p.cpu_seconds for p in alive)
    rss = sum(p.rss for p in alive)
    return {"t": round(time.time(), 3), "cpu": round(cpu, 3), "rss": rss, "procs": len(alive)}
