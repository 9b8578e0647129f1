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
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable

import anyio
import psutil

COOKIE_VAR = "PAGENT_COOKIE"
_POLL = 0.05  # seconds between checks while waiting for processes to go


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


def session_members(sid: int) -> list[psutil.Process]:
    """Every live process in session ``sid``."""
    members = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error, OSError):
            if os.getsid(proc.pid) == sid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
    return members


def with_cookie(prefix: str) -> list[psutil.Process]:
    """Every live process whose ``PAGENT_COOKIE`` starts with ``prefix`` (the whole cookie, or
    a run's prefix during crash recovery). Processes we may not inspect are skipped."""
    me = os.getpid()
    found = []
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


def tree(main: psutil.Process | None, leader: int | None, cookie: str) -> list[psutil.Process]:
    """The attempt's whole tree as defined in this module's docstring, without duplicates.

    ``leader`` is the pid of the attempt's main process, which leads its own session and process
    group (their ids equal its pid); ``main`` is that process while it still runs.
    """
    procs: dict[int, psutil.Process] = {}
    if main is not None and alive(main):
        procs[main.pid] = main
        procs.update((p.pid, p) for p in descendants(main))
    if leader is not None:
        procs.update((p.pid, p) for p in session_members(leader) if p.pid not in procs)
    procs.update((p.pid, p) for p in with_cookie(cookie) if p.pid not in procs)
    return list(procs.values())


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
