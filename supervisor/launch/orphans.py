"""Orphans of attempts: processes that left an attempt's tree, its session *and* its cookie.

A daemon that double-forks, calls ``setsid`` and execs itself with an empty environment cannot
be told apart from any other process on the machine by looking at it (``proctree``). What it
cannot hide is where it goes when its parent exits: the supervisor makes itself a *child
subreaper* (Linux ``prctl(PR_SET_CHILD_SUBREAPER)``, once per process), so every orphan of every
process it started is re-parented to it instead of to init. The kernel re-parents to the
process's first live thread, the main one: its children list (``/proc/PID/task/PID/children``)
then holds orphans, whoever started them, and nothing else of pagent's.

The attempts' main processes are started on the spawner thread (``supervisor.launch.spawner``)
and are listed under it, as children that worker threads start (git, ``gh``, hooks:
``supervisor.workspace``) are listed under those threads: none of them is ever looked at. The
launcher still registers each attempt's main process here (``own``), so that one started on the
main thread would not be taken for an orphan either. A process in the supervisor's own session
is never one, since no attempt's process can ever join it (every attempt starts a session of its
own). So the rule holds as long as nothing else forks on the main thread while an event loop
runs there (asyncio's own subprocesses would; pagent does not use them).

Which attempt an orphan belongs to is not written on it, but *when* it was created is: the
kernel's start time, in clock ticks since boot, the same clock every ``Window`` reads before its
attempt's process starts. An orphan created at T can only belong to an attempt whose window
was open at T. So an orphan is stopped (SIGTERM, grace, SIGKILL, with whatever it started) only
once the attempts that could own it have all ended: when T is at or after the start of a window
that is ending, and before the start of every window still open. A live attempt's daemon is
never touched; at the end of the run, when no window is open, nothing of any attempt is left.
Dead orphans (zombies) are reaped by pid, never with ``waitpid(-1)``: ``subprocess`` must not
lose its children's exit statuses.

Where this does not exist (not Linux, no ``prctl``, no ``children`` file) ``adopt`` returns
False, orphans go to init as before, and every call here does nothing. The subreaper dies with
the supervisor: after a SIGKILL the next run finds what is left by cookie and session only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import sys
import time
from dataclasses import dataclass

import psutil

from supervisor.launch import proctree

_PR_SET_CHILD_SUBREAPER = 36
_CHILDREN_READ = 1 << 16  # bytes of the children file one pread takes (a few thousand pids)
_ROUNDS = 4  # scans per collection: stopping an orphan can orphan what it started
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _ticks_now() -> int:
    """Clock ticks since boot, as /proc counts a process's start time (floored like the kernel)."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) * _TICKS_PER_SECOND // 1_000_000_000  # Linux only


@dataclass(frozen=True)
class _Child:
    """One line of the main thread's children, as /proc/PID/stat tells it."""

    pid: int
    zombie: bool
    session: int
    started: int  # clock ticks since boot


def _child(pid: int) -> _Child | None:
    """What /proc says about ``pid``; ``None`` if it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            data = file.read()
        fields = data[data.rindex(b")") + 2 :].split()
        # After the command: state, ppid, pgrp, session, ..., starttime (field 22 of the line).
        return _Child(pid, fields[0] == b"Z", int(fields[3]), int(fields[19]))
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True, eq=False)
class Window:
    """One attempt's lifetime on the kernel's clock, from just before its process started (0
    where there is no subreaper: then nothing ever looks at it)."""

    start: int = 0


class Orphanage:
    """The supervisor's bookkeeping as a subreaper (one per process: see ``ORPHANS``)."""

    def __init__(self) -> None:
        self.enabled = False
        self._tried = False
        self._children = ""
        self._children_fd: int | None = None  # the children file, kept open (``none_alive``)
        self._session = 0
        self._open: dict[Window, None] = {}
        self._ending: dict[Window, None] = {}
        self._own: set[int] = set()

    def adopt(self) -> bool:
        """Make this process a child subreaper (once); whether orphans come to it now."""
        if self._tried:
            return self.enabled
        self._tried = True
        if not sys.platform.startswith("linux"):
            return False
        me = os.getpid()
        children = f"/proc/{me}/task/{me}/children"
        try:
            ours = os.readlink("/proc/self") == str(me)  # noqa: PTH115 - not another pid namespace's
        except OSError:
            ours = False
        if not ours or not os.access(children, os.R_OK):
            return False  # without the children list, adopted zombies could never be found
        # The libc this Python runs on, from its own symbols (ctypes.util.find_library would
        # run ``ldconfig -p`` in a child process, a few ms of every run's start).
        prctl = getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)
        if prctl is None or prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
            return False
        self._children = children
        self._session = os.getsid(0)
        self.enabled = True
        return True

    def open(self) -> Window:
        """An attempt's process is about to start (call it right before ``Popen``)."""
        if not self.enabled:
            return Window()
        window = Window(_ticks_now())
        self._open[window] = None
        return window

    def own(self, pid: int) -> None:
        """``pid`` is a child this process started and will reap itself: never an orphan."""
        if self.enabled:
            self._own.add(pid)

    def ending(self, window: Window) -> None:
        """The attempt's tree is gone: what it still left behind may be stopped now."""
        if window in self._open:
            del self._open[window]
            self._ending[window] = None

    def close(self, window: Window, pid: int | None) -> None:
        """The attempt is over and its main process ``pid`` reaped."""
        self._open.pop(window, None)
        self._ending.pop(window, None)
        if pid is not None:
            self._own.discard(pid)

    def none_alive(self) -> bool:
        """Whether this process has no child now but its own: no orphan, not even a dead one.

        Then an attempt whose main process has exited left nothing behind: whatever of its tree
        still ran when the main process ended was re-parented, its orphans to this subreaper
        (which lists them here) and their descendants below them. ``False`` when it cannot
        tell (no subreaper)."""
        if not self.enabled:
            return False
        try:
            # One pread on a file kept open (a /proc seq file is made anew at each read from
            # 0): an open per attempt's end cost the loop's thread 15 times as much.
            if self._children_fd is None:
                self._children_fd = os.open(self._children, os.O_RDONLY | os.O_CLOEXEC)
            text = os.pread(self._children_fd, _CHILDREN_READ, 0)
            if len(text) == _CHILDREN_READ:  # more children than one read takes
                with open(self._children, "rb", buffering=0) as file:
                    text = file.read()
        except OSError:
            return False
        return all(int(pid) in self._own for pid in text.split())

    def _scan(self) -> list[_Child]:
        """The main thread's children that are not our own, outside our session; zombies among
        them are reaped on the way (by pid: the check and the reaping happen without an await,
        so the pid cannot have been handed to a new process of ours in between)."""
        try:
            with open(self._children, "rb") as file:
                pids = [int(p) for p in file.read().split()]
        except (OSError, ValueError):
            return []
        found = []
        for pid in pids:
            if pid in self._own or (child := _child(pid)) is None or child.session == self._session:
                continue
            if child.zombie:
                with contextlib.suppress(ChildProcessError):
                    os.waitpid(pid, os.WNOHANG)
            else:
                found.append(child)
        return found

    def _stoppable(self, child: _Child) -> bool:
        """Created while an ending attempt ran, and before every attempt still running began."""
        ending = min((w.start for w in self._ending), default=None)
        if ending is None or child.started < ending:
            return False
        return all(child.started < w.start for w in self._open)

    async def collect(self, grace: float) -> int:
        """Stop every orphan no running attempt can own (and what it started), reap the dead;
        return how many processes were stopped."""
        if not self.enabled:
            return 0
        stopped = 0
        for _ in range(_ROUNDS):
            procs: dict[int, psutil.Process] = {}
            for child in self._scan():
                if self._stoppable(child):
                    with contextlib.suppress(psutil.Error):
                        main = psutil.Process(child.pid)
                        procs[child.pid] = main
                        procs.update((p.pid, p) for p in proctree.descendants(main))
            if not procs:
                break
            stopped += len(procs)
            await proctree.stop_processes(list(procs.values()), None, grace)
        if stopped:
            self._scan()  # reap what the last round stopped
        return stopped


ORPHANS = Orphanage()
