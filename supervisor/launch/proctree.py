"""What the OS tells about an attempt's processes (psutil), and the one way to stop them.

An attempt's *tree* is every process that belongs to it: its main process, that process's
descendants, every member of its session (the main process leads a session and a process group
of its own, so this takes in the group, orphans whose parent has exited, and children moved to
another group as job-control shells do), and every process whose environment carries the
attempt's cookie (``PAGENT_COOKIE``) -- the last catches double-forked daemons that started a
session of their own, the way Jenkins' ProcessTreeKiller finds a build's leftovers by its
BUILD_ID. A process that left the session *and* dropped the cookie cannot be told apart from
any other process on the machine and is not found.

psutil only observes; stopping is ``stop_processes``: SIGTERM to all, up to ``grace`` seconds,
then SIGKILL.

Looking at every process on the machine at every attempt's end costs milliseconds, more than a
short attempt itself. An attempt therefore takes a ``PidMark`` just before it starts: every
process of its tree was created after that, and Linux hands out pids in cyclic order, so only
pids handed out since the mark can belong to it. ``pids_since`` returns those (looking each one
up when there are few, as after an attempt that lasted a moment, else from a listing of
/proc), or every pid whenever it cannot be sure the counter has not gone round a whole lap in
between.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import time
from collections.abc import Collection, Iterable
from dataclasses import dataclass

import anyio
import psutil

COOKIE_VAR = "PAGENT_COOKIE"
_POLL = 0.05  # seconds between checks while waiting for processes to go
_RESERVED_PIDS = 300  # after a wrap, Linux hands out pids from here on
_PROBE_MAX = 48  # up to this many pids handed out since a mark are looked up one by one
_COOKIE_BYTES = f"\0{COOKIE_VAR}=".encode()
_TABLE_MAX_AGE = 0.1  # seconds a process table may be reused by ``sample``-style questions
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")  # what psutil divides /proc start times by
_NS_PER_TICK = 1_000_000_000 // _TICKS_PER_SECOND


@dataclass(frozen=True)
class PidMark:
    """Where the kernel's pid counter stood at one moment (see the module docstring)."""

    last_pid: int  # the pid handed out last in our pid namespace (/proc/loadavg)
    forks: int  # processes and threads created since boot, machine-wide (/proc/stat)
    tasks: int  # processes and threads alive, machine-wide (/proc/loadavg)
    pid_max: int
    boot_time: float = 0.0  # when the machine booted, as psutil reads it (/proc/stat: btime)


def read_small(path: str) -> bytes:
    """A small /proc file, read with two system calls (``open()`` would build a buffered file)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


@functools.cache
def _own_proc(pid: int) -> bool:
    """Whether /proc shows our own pid namespace (asked once per process: it never changes)."""
    return os.readlink("/proc/self") == str(pid)  # noqa: PTH115


_recent: tuple[float, PidMark] | None = None  # the latest mark and when it was taken (monotonic)


def pid_mark(max_age: float = 0.0) -> PidMark | None:
    """The pid counter now; ``None`` where /proc does not tell (then nothing is filtered).

    With ``max_age``, a mark taken at most that many seconds ago may be the answer: an earlier
    mark is as good a start for an attempt (every process of its tree is newer still), it only
    lets a few more pids be looked at, and attempts that start together share one look at /proc.
    """
    global _recent  # noqa: PLW0603 - one cache for the whole process, that is the point
    if max_age > 0 and _recent is not None and time.monotonic() - _recent[0] <= max_age:
        return _recent[1]
    taken = time.monotonic()
    mark = _read_mark()
    if mark is not None:
        _recent = (taken, mark)
    return mark


def _read_mark() -> PidMark | None:
    try:
        # A /proc of another pid namespace lists pids that are not ours.
        if not _own_proc(os.getpid()):
            return None
        loadavg = read_small("/proc/loadavg").split()
        stat = read_small("/proc/stat")
        forks = int(stat.split(b"\nprocesses ", 1)[1].split(None, 1)[0])
        boot_time = float(stat.split(b"\nbtime ", 1)[1].split(None, 1)[0])
        pid_max = int(read_small("/proc/sys/kernel/pid_max"))
        return PidMark(int(loadavg[4]), forks, int(loadavg[3].split(b"/")[1]), pid_max, boot_time)
    except (OSError, IndexError, ValueError):
        return None


def _all_pids() -> list[int]:
    # os.listdir, not Path.iterdir: this runs at every attempt's end and builds no Path per entry.
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]  # noqa: PTH208


def pids_since(mark: PidMark | None, skip: Collection[int] = ()) -> list[int] | None:
    """Pids of the live processes that may have been created after ``mark``.

    ``None`` means "any process may have been": the caller must look at all of them. That is
    the answer without a mark, and whenever the counter may have gone round since: the cursor
    moves one step per pid handed out plus one per pid in use it skips, so it stays within one
    lap while twice the tasks created plus those alive at the mark stay below the pid range.

    When few pids were handed out since (an attempt that lasted a moment), each of them is
    looked up in /proc, which is far cheaper than listing every process on the machine. Pids in
    ``skip`` are left out without a look (the caller knows what they are).
    """
    if mark is None:
        return None
    if (now := pid_mark()) is not None and now.last_pid >= mark.last_pid:
        low, high = mark.last_pid, now.last_pid
        if high - low <= _PROBE_MAX and _trusted(mark, now):
            # The counter was read before these lookups: each pid found was handed out by then.
            return [pid for pid in range(low + 1, high + 1) if pid not in skip and _is_process(pid)]
    pids = _all_pids()  # listed before the counter is read: each of them was created by then
    now = pid_mark()
    if now is None or not _trusted(mark, now):
        return None
    low, high = mark.last_pid, now.last_pid
    if low <= high:
        return [pid for pid in pids if low < pid <= high and pid not in skip]
    return [pid for pid in pids if (pid > low or pid <= high) and pid not in skip]  # wrapped once


def _trusted(mark: PidMark, now: PidMark) -> bool:
    """Whether the counter cannot have gone round a whole lap between ``mark`` and ``now``."""
    if now.pid_max != mark.pid_max:
        return False
    return 2 * (now.forks - mark.forks) + mark.tasks < mark.pid_max - _RESERVED_PIDS


def _is_process(pid: int) -> bool:
    """Whether ``pid`` is a live process's (a thread's id has a /proc entry too, unlisted)."""
    try:
        status = read_small(f"/proc/{pid}/status")
    except OSError:
        return False
    start = status.find(b"\nTgid:")
    if start < 0:
        return False
    end = status.find(b"\n", start + 6)
    try:
        return int(status[start + 6 : end]) == pid
    except ValueError:
        return False


def boot_clock() -> int:
    """Nanoseconds since boot, on the clock the kernel stamps a new process's start with."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME)


def start_ticks(between: tuple[int, int] | None) -> int | None:
    """A new process's start in clock ticks since boot (field 22 of ``/proc/PID/stat``) when
    ``between``, ``boot_clock()`` read just before and just after it was created, tells it:
    both readings in one tick (see ``started_at``); else ``None``."""
    if between is None:
        return None
    first, last = between[0] // _NS_PER_TICK, between[1] // _NS_PER_TICK
    return first if first == last else None


def started_at(pid: int, mark: PidMark | None, between: tuple[int, int] | None = None) -> float:
    """When process ``pid`` started, in seconds since the epoch, exactly as psutil's
    ``create_time`` says it (its start in clock ticks since boot, plus the boot time): from
    /proc with the boot time ``mark`` read, without building a ``psutil.Process``.

    ``between``: ``boot_clock()`` just before and just after the process was created. The
    kernel stamps its start on that clock while it creates it and /proc tells it in whole clock
    ticks, rounded down: when both readings fall into one tick, that tick is the answer and
    /proc is not read at all (measured: 98 of 100 quick starts on a 2-core VM; three system
    calls fewer, on the thread every start goes through).
    """
    if mark is not None and mark.boot_time:
        ticks = start_ticks(between)
        if ticks is not None:
            return float(ticks) / _TICKS_PER_SECOND + mark.boot_time
        with contextlib.suppress(OSError, ValueError, IndexError):
            data = read_small(f"/proc/{pid}/stat")
            field = data[data.rindex(b")") + 2 :].split()[19]  # field 22 of the line: starttime
            return float(field) / _TICKS_PER_SECOND + mark.boot_time
    return float(psutil.Process(pid).create_time())


def identity(pid: int) -> float | None:
    """The create time of process ``pid``, or ``None`` if there is no such process."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def find(pid: int | None, started: float | None) -> psutil.Process | None:
    """The process ``pid`` if it is still the one that started at ``started`` (pids get reused)."""
    if pid is None:
        return None
    try:
        proc = psutil.Process(pid)
        if started is not None and abs(proc.create_time() - started) > 0.01:
            return None
        return None if proc.status() == psutil.STATUS_ZOMBIE else proc
    except psutil.Error:
        return None


def alive(proc: psutil.Process) -> bool:
    """True while ``proc`` (the very process, not a reuse of its pid) runs and is not a zombie."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def descendants(proc: psutil.Process) -> list[psutil.Process]:
    """Every live descendant of ``proc``; empty if it is gone."""
    try:
        return proc.children(recursive=True)
    except psutil.Error:
        return []


def group_members(pgid: int) -> list[psutil.Process]:
    """Every live process in process group ``pgid``."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def session_members(sid: int, pids: list[int] | None = None) -> list[psutil.Process]:
    """Every live process in session ``sid`` (among ``pids`` when given)."""
    members = []
    for pid in psutil.pids() if pids is None else pids:
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(pid) == sid and (proc := psutil.Process(pid)).status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def _session_of(pid: int) -> int | None:
    """The session ``pid`` belongs to; ``None`` if it is gone."""
    try:
        return os.getsid(pid)
    except OSError:
        return None


def _cookie_of(pid: int) -> str | None:
    """The ``PAGENT_COOKIE`` in the environment of ``pid``, read straight from /proc."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as file:
            data = b"\0" + file.read()
    except OSError:  # gone, or not ours to read
        return None
    start = data.find(_COOKIE_BYTES)
    if start < 0:
        return None
    start += len(_COOKIE_BYTES)
    end = data.find(b"\0", start)
    return data[start : end if end >= 0 else len(data)].decode("utf-8", "replace")


def with_cookie(prefix: str, pids: list[int] | None = None) -> list[psutil.Process]:
    """Every live process whose ``PAGENT_COOKIE`` starts with ``prefix`` (the whole cookie, or
    a run's prefix during crash recovery), among ``pids`` when given. Processes we may not
    inspect are skipped."""
    me = os.getpid()
    found = []
    if pids is None:
        for proc in psutil.process_iter():
            if proc.pid == me:
                continue
            try:
                value = proc.environ().get(COOKIE_VAR)
            except psutil.Error:
                continue
            if value is not None and value.startswith(prefix) and alive(proc):
                found.append(proc)
        return found
    for pid in pids:
        if pid != me and (value := _cookie_of(pid)) is not None and value.startswith(prefix):
            with contextlib.suppress(psutil.Error):
                if alive(proc := psutil.Process(pid)):
                    found.append(proc)
    return found


def tree(
    main: psutil.Process | None,
    leader: int | None,
    cookie: str,
    since: PidMark | None = None,
    others: Collection[int] = (),
) -> list[psutil.Process]:
    """The attempt's whole tree as defined in this module's docstring, without duplicates.

    ``leader`` is the pid of the attempt's main process, which leads its own session and process
    group (their ids equal its pid); ``main`` is that process while it still runs. ``since`` is
    the attempt's ``PidMark``, taken before it started: only processes created after it are
    looked at for session and cookie. ``others`` are pids known to be no part of it (the main
    processes of other attempts, each leading a session of its own with a cookie of its own):
    neither they nor the members of their sessions are looked at for the cookie.
    """
    procs: dict[int, psutil.Process] = {}
    if main is not None and alive(main):
        procs[main.pid] = main
        procs.update((p.pid, p) for p in descendants(main))
    pids = pids_since(since, others)
    if pids is not None and others:
        # A process in another attempt's session was forked there: it is that attempt's, found
        # and stopped at its end. Asking its session is far cheaper than reading its environment.
        pids = [pid for pid in pids if _session_of(pid) not in others]
    if leader is not None:
        procs.update((p.pid, p) for p in session_members(leader, pids) if p.pid not in procs)
    procs.update((p.pid, p) for p in with_cookie(cookie, pids) if p.pid not in procs)
    return list(procs.values())


_table: tuple[float, dict[int, list[int]]] | None = None


def _children_table(max_age: float) -> dict[int, list[int]] | None:
    """Child pids of every process, from a table at most ``max_age`` seconds old, shared by all
    callers; ``None`` without /proc."""
    global _table  # noqa: PLW0603 - one table for the whole process, that is the point
    now = time.monotonic()
    if _table is not None and now - _table[0] <= max_age:
        return _table[1]
    children: dict[int, list[int]] = {}
    try:
        pids = _all_pids()
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat", "rb") as file:
                data = file.read()
            ppid = int(data[data.rindex(b")") + 2 :].split(None, 2)[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(pid)
    _table = (now, children)
    return children


def recent_descendants(proc: psutil.Process, max_age: float = _TABLE_MAX_AGE) -> list[psutil.Process]:
    """``descendants(proc)`` as a process table at most ``max_age`` seconds old shows them.

    For measuring, not for stopping: many attempts sampled within ``max_age`` share one look at
    /proc instead of one each, and a child younger than the table is seen at the next sample.
    """
    table = _children_table(max_age)
    if table is None:
        return descendants(proc)
    found: list[psutil.Process] = []
    todo = list(table.get(proc.pid, ()))
    while todo:
        pid = todo.pop()
        with contextlib.suppress(psutil.Error):
            found.append(psutil.Process(pid))
            todo.extend(table.get(pid, ()))
    return found


def _signal_all(procs: Iterable[psutil.Process], pgid: int | None, sig: int) -> None:
    if pgid is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(sig)


def _group_alive(pgid: int | None) -> bool:
    if pgid is None:
        return False
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    # killpg(0) also succeeds for zombies; only count members that really run.
    return bool(group_members(pgid))


async def survivors(procs: list[psutil.Process], within: float) -> list[psutil.Process]:
    """Those of ``procs`` still alive after at most ``within`` seconds (returns as soon as none
    is): for processes that are ending by themselves."""
    deadline = time.monotonic() + within
    remaining = [p for p in procs if alive(p)]
    while remaining and time.monotonic() < deadline:
        await anyio.sleep(_POLL / 5)
        remaining = [p for p in remaining if alive(p)]
    return remaining


async def stop_processes(procs: list[psutil.Process], pgid: int | None, grace: float) -> int:
    """Stop ``procs`` and the group ``pgid``: SIGTERM, wait up to ``grace``, SIGKILL the rest.

    Returns how many processes had to be killed with SIGKILL. Never raises for processes that
    are already gone; returns once everything is gone or one more second after SIGKILL.
    """
    _signal_all(procs, pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    remaining = [p for p in procs if alive(p)]
    while (remaining or _group_alive(pgid)) and time.monotonic() < deadline:
        await anyio.sleep(_POLL)
        remaining = [p for p in remaining if alive(p)]
    if not remaining and not _group_alive(pgid):
        return 0
    # Whatever appeared in the group meanwhile is killed too.
    _signal_all(remaining, pgid, signal.SIGKILL)
    killed = len(remaining)
    deadline = time.monotonic() + 1.0
    while remaining and time.monotonic() < deadline:
        await anyio.sleep(_POLL)
        remaining = [p for p in remaining if alive(p)]
    return killed


def available_memory() -> int:
    """Bytes of memory available to new processes without swapping (psutil's ``available``)."""
    return int(psutil.virtual_memory().available)
