"""Local processes: each attempt's agent as a subprocess in a session of its own.

The main process starts with ``setsid`` (its own session and process group), watched by the
guardian (``supervisor.guardian``), which stops its group should the supervisor die. Exit is
observed through a pidfd, output through non-blocking pipes read on the event loop (all of them
in one epoll set, ``supervisor.launch.reactor``): no thread per child. The process is started on
the spawner thread (``supervisor.launch.spawner``), so that the wait for the child's exec never
holds the event loop up. The prompt reaches the agent's stdin as a file, which ends in EOF
exactly like a closed pipe.

Where the guardian cannot run (or was killed more often than it is replaced), the process asks
for the parent-death signal itself: through util-linux ``setpriv`` in front of the agent's argv
(same process, one more exec) wherever it works, so that ``subprocess`` can use vfork; without
it, by a ``preexec_fn``, which forces fork. With ``setpriv`` the launcher checks beforehand that
the agent's program can be executed, so a missing one still fails the launch (``OSError``)
instead of becoming an exit code. A supervisor killed in the instant between the start and the
guardian's ``watch`` (or ``setpriv``'s prctl) leaves an agent unwatched, which the next run's
recovery finds by its cookie.

The launcher also makes the supervisor a child subreaper (``supervisor.launch.orphans``): what
an attempt leaves behind after scrubbing its cookie and leaving its session is re-parented to
the supervisor and stopped by ``finish`` once no running attempt can own it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import errno
import functools
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import NamedTuple

import anyio
import psutil

from supervisor.guardian import GUARDIAN, Guardian
from supervisor.launch import orphans, proctree
from supervisor.launch.pipes import Pipes
from supervisor.launch.reactor import Reactor, for_loop
from supervisor.launch.spawner import SPAWNER
from supervisor.pdeathsig import setpriv_prefix
from supervisor.seam import Exit, OutputCallback, Sample, Stream

_PR_SET_PDEATHSIG = 1
_OOM_EVENTS = "/sys/fs/cgroup/memory.events"
_SANDBOX_ENDS = 1.0  # seconds a sandbox's namespace may take to end after bwrap exited
_DEFAULT_GRACE = 1.0  # for clean-up the caller left to the launcher without ever naming a grace
# The main processes this process started and has not reaped yet: until reaped, a pid names the
# very process, which leads a session of its own and carries its own attempt's cookie, so it is
# no part of any other attempt's tree (``proctree.tree(others=...)``) and is never looked at.
_MAINS: set[int] = set()
_MARK_MAX_AGE = 0.02  # seconds an attempt's pid mark may be older than its start (shared marks)


def _pdeathsig_command() -> tuple[str, ...] | None:
    """The ``setpriv`` prefix for the agent's argv (``supervisor.pdeathsig``), or ``None``.

    It costs the child one more exec. The alternative, ``_pdeathsig_setter``, costs the
    supervisor far more: any ``preexec_fn`` makes ``subprocess`` fork instead of vfork, which
    copies the supervisor's page tables and blocks the event loop until the child has exec'd
    (about 4 ms per attempt on a small VM, against under 1 ms).
    """
    return setpriv_prefix()


def _guardian() -> Guardian | None:
    """The guardian, started once per process (``supervisor.guardian``), or ``None`` where it
    cannot run."""
    return GUARDIAN if GUARDIAN.start() else None


def check_executable(program: str, env: Mapping[str, str], cwd: Path) -> None:
    """Raise the ``OSError`` that exec'ing ``program`` directly would raise (not found, not
    executable), as ``subprocess`` does when there is no wrapper in front of it."""
    if os.sep in program:
        candidates = [program]
    else:
        candidates = [str(Path(folder) / program) for folder in os.get_exec_path(dict(env))]
    error = errno.ENOENT
    for candidate in candidates:
        path = cwd / candidate
        if not path.exists():
            continue
        if path.is_file() and os.access(path, os.X_OK):
            return
        error = errno.EACCES
    raise OSError(error, os.strerror(error), program)


def _pdeathsig_setter() -> Callable[[], None] | None:
    """A ``preexec_fn`` that asks Linux to SIGTERM the child when its parent dies.

    libc is resolved here, in the parent, so the child only makes one system call between
    fork and exec. If the parent already died before the call, the child exits at once.
    """
    if not sys.platform.startswith("linux"):
        return None
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return None
    prctl = ctypes.CDLL(libc_name, use_errno=True).prctl
    parent = os.getpid()

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class LocalHandle:
    """A running local attempt; see ``supervisor.seam.AttemptHandle``.

    Its exit comes through a pidfd and its output through ``Pipes``, both reader callbacks on
    the event loop: ``wait`` only waits for what they report. psutil looks at the main process
    only when the attempt is stopped or sampled: until it is reaped (by ``wait``'s callback) its
    pid cannot name another process.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        cookie: str,
        *,
        since: proctree.PidMark | None = None,
        window: orphans.Window | None = None,
        signal_codes: bool = False,
        on_output: OutputCallback | None = None,
        started: float | None = None,
        guardian: Guardian | None = None,
        prepared: _Prepared,
        reactor: Reactor,
    ) -> None:
        """``started``: when the process started, as ``proctree.started_at`` read it (read here
        when not given); ``guardian``: the one that watches its group (``None``: it carries its
        own parent-death signal); ``prepared``: what the spawner thread already did for it
        (``_spawn``: opened its pidfd, read the OOM count, made its pipes non-blocking and put
        them and the pidfd in ``reactor``'s epoll set)."""
        self._popen = popen
        self._guardian = guardian
        # A wrapper that reports its command's death by signal N as exit code 128 + N (the
        # sandbox's bwrap): read such codes back as the signal.
        self._signal_codes = signal_codes
        self._cookie = cookie
        self._since = since  # the pid counter before the attempt started: its processes are newer
        self._window = window or orphans.Window()  # when it started, for the orphans it leaves
        self._proc: psutil.Process | None = None
        self.pid = popen.pid
        self.pid_started = started if started is not None else proctree.started_at(popen.pid, since)
        self.ref = f"{self.pid}:{self.pid_started!r}"  # pid and start time name the process
        self._oom_before = prepared.oom_before
        self._exit: Exit | None = None
        # The main process ended, or on_output raised (asyncio's own event: this handle lives on
        # the loop's thread, and anyio's looks the backend up at every creation).
        self._wake = asyncio.Event()
        self._raised = False
        self._finished = False
        self.grace = _DEFAULT_GRACE  # the latest grace the caller asked for
        self._reactor = reactor
        self._pidfd = prepared.pidfd
        self._pipes = Pipes(
            [(prepared.stdout, Stream.STDOUT), (prepared.stderr, Stream.STDERR)],
            on_output or (lambda data, stream: None),
            self._wake.set,
            reactor,
        )
        if self._pidfd is not None:
            reactor.attach(self._pidfd, self._exited)

    def _exited(self) -> None:
        """The pidfd says the main process ended: reap it (at once: it is a zombie now). A call
        with no news (see ``supervisor.launch.reactor``) finds it running and changes nothing."""
        if self._exit is not None:
            return
        code = self._popen.poll()
        if code is None:
            return
        if self._pidfd is not None:
            self._reactor.detach(self._pidfd)
        self._reap(code)
        self._wake.set()

    def _reap(self, code: int | None = None) -> None:
        """Take the main process's exit (``code``: as ``Popen`` already read it)."""
        if code is None:
            code = self._popen.wait()
        _MAINS.discard(self.pid)  # at once: the pid may name another process from now on
        if self._signal_codes and 128 < code <= 128 + 64:
            code = 128 - code
        if code < 0:
            oom = -code == signal.SIGKILL and (_oom_kills() or 0) > (self._oom_before or 0)
            self._exit = Exit(signal=-code, oom=oom and self._oom_before is not None)
        else:
            self._exit = Exit(code=code)

    def _raise_failure(self) -> None:
        """Raise what ``on_output`` raised (once), in the task that owns the attempt."""
        if self._pipes.failure is not None and not self._raised:
            self._raised = True
            raise self._pipes.failure

    def _main(self) -> psutil.Process | None:
        """The main process while it is not reaped (``None`` after, or if psutil cannot see it)."""
        if self._exit is None and self._proc is None:
            with contextlib.suppress(psutil.Error):
                self._proc = psutil.Process(self.pid)
        return self._proc if self._exit is None else None

    async def _exit_of_main(self) -> Exit:
        while self._exit is None:
            if self._pidfd is None:  # pragma: no cover - Linux < 5.3
                if self._popen.poll() is None:
                    await anyio.sleep(0.05)
                    continue
                self._reap()
                break
            if self._wake.is_set():  # woken by a failure already raised: wait for the exit
                self._wake = asyncio.Event()
            await self._wake.wait()
            if not self._raised and self._pipes.failure is not None:
                break
        return self._exit or Exit()

    async def wait(self) -> Exit:
        """Return once the main process has ended (reaping it); raise what ``on_output`` raised."""
        self._raise_failure()
        exit = await self._exit_of_main()
        self._raise_failure()
        return exit

    def exited(self) -> Exit | None:
        """The main process's exit once its pidfd said so (it is reaped then)."""
        return self._exit

    async def stop(self, grace: float) -> None:
        """SIGTERM the whole tree, then SIGKILL what is left after ``grace`` seconds."""
        self.grace = grace
        others = _MAINS - {self.pid}
        procs = proctree.tree(self._main(), self.pid, self._cookie, self._since, others)
        await proctree.stop_processes(procs, self.pid, grace)

    async def finish(self, grace: float) -> int:
        """Stop the leftovers of an ended main process and wait (``grace`` at most) for EOF.

        A leftover that cannot be found (it left the session and dropped the cookie) may hold the
        pipes open for ever: after ``grace`` the output is cut off, never waited for again.
        """
        self.grace = grace
        # Every process of its tree alive when the main process ended is an orphan now or below
        # one (orphans come to this subreaper): with none at all, nothing is left (not checked
        # so in a sandbox, which ends a moment after bwrap reports its exit).
        quick = not self._signal_codes and orphans.ORPHANS.none_alive()
        others = _MAINS - {self.pid}
        procs = [] if quick else proctree.tree(None, self.pid, self._cookie, self._since, others)
        if procs and self._signal_codes:
            # A sandbox ends by itself once its command has: bwrap reports the exit a moment
            # before its pid namespace's init is gone, and the kernel kills whatever is left
            # in the namespace with it. Only what outlives that is a leftover.
            procs = await proctree.survivors(procs, _SANDBOX_ENDS)
        if procs:
            await proctree.stop_processes(procs, self.pid, grace)
        # Its tree is gone: what it left outside tree, session and cookie may be stopped now.
        orphans.ORPHANS.ending(self._window)
        # Without any orphan (nothing awaited since it was asked) there is nothing to collect.
        stopped = 0 if quick else len(procs) + await orphans.ORPHANS.collect(grace)
        if not self._pipes.done.is_set():
            with anyio.move_on_after(grace):
                await self._pipes.done.wait()
        self._finished = True  # not when cancelled half-way: the launcher's clean-up redoes it
        self._raise_failure()
        return stopped

    def sample(self) -> Sample | None:
        """CPU seconds, RSS and process count of the main process and its descendants.

        CPU time includes what exited, reaped descendants used (the kernel adds it to their
        parent's ``children_*`` times): an agent computing through many short-lived processes
        shows a growing total, not one that jumps up and down with whichever child is alive.

        Each sample also makes sure the guardian runs: one an agent killed is replaced now, not
        at the next start or end of an attempt (``Guardian.check``).
        """
        if self._guardian is not None:
            self._guardian.check()
        main = self._main()
        if main is None:
            return None
        cpu = 0.0
        rss = 0
        count = 0
        for proc in [main, *proctree.recent_descendants(main)]:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    cpu += times.user + times.system + times.children_user + times.children_system
                    rss += proc.memory_info().rss
                    count += 1
            except psutil.Error:
                continue
        return Sample(cpu_seconds=cpu, rss=rss, procs=count) if count else None

    async def end(self) -> None:
        """Whatever the owner did: stop what still runs and reap it, stop the leftovers, never
        waiting a second time for what the owner already waited for; raises nothing."""
        with anyio.CancelScope(shield=True):
            if self._exit is None:
                await self.stop(self.grace)
                await self._exit_of_main()
            if not self._finished:
                with contextlib.suppress(Exception):
                    await self.finish(self.grace)

    def close(self) -> None:
        """Release the pipes and the pidfd; the attempt is over (its main process reaped, if it
        was started)."""
        self._pipes.close()
        if self._pidfd is not None:
            self._reactor.detach(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        orphans.ORPHANS.close(self._window, self.pid if self._exit is not None else None)


class LocalLauncher:
    """Starts local processes with their own session, a parent-death signal, pidfd and pipes."""

    def __init__(self) -> None:
        self._guardian = _guardian()
        self._fallback: tuple[tuple[str, ...] | None, Callable[[], None] | None] | None = None
        self.adopts_orphans = orphans.ORPHANS.adopt()  # once per process; False where unsupported
        if self._guardian is not None:  # our child for good (and each that replaces it): never an orphan
            self._guardian.on_start(orphans.ORPHANS.own)

    def _pdeathsig(self) -> tuple[tuple[str, ...] | None, Callable[[], None] | None]:
        """What gives a process its parent-death signal when the guardian is not (or no longer)
        running: the ``setpriv`` prefix, else the ``preexec_fn``. Probed at the first need only
        (the probe runs ``setpriv`` once: 5 ms of every run's start, while the guardian runs)."""
        if self._fallback is None:
            prefix = _pdeathsig_command()
            self._fallback = (prefix, None if prefix is not None else _pdeathsig_setter())
        return self._fallback

    @asynccontextmanager
    async def start(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        stdin: Path | None,
        cookie: str,
        on_output: OutputCallback,
        signal_codes: bool = False,
    ) -> AsyncIterator[LocalHandle]:
        """Start ``argv``; on leaving, its tree is gone and its pipes are closed. ``env`` is the
        complete environment (it must carry ``cookie`` as ``PAGENT_COOKIE``); ``stdin`` is read
        by the process to EOF (``None``: an empty stdin). ``signal_codes``: ``argv`` is a wrapper
        that exits 128 + N when its command died of signal N (read back as that signal)."""
        # Popen returns only once the child has exec'd, which on a busy machine takes
        # milliseconds: it runs on the spawner thread, which lives as long as the process (Linux
        # sends the parent-death signal when the *thread* that forked the child ends).
        # The program's check, the stdin file, the pipes and the child's start time are done there
        # too: none of them holds the loop up.
        command = list(argv)
        guard = self._guardian if self._guardian is not None and self._guardian.running else None
        prefix, preexec = self._pdeathsig() if guard is None else (None, None)
        check = command[0] if prefix is not None else None
        if prefix is not None:
            command = [*prefix, *command]
        window = orphans.ORPHANS.open()
        reactor = for_loop(asyncio.get_running_loop())
        spawn = functools.partial(
            _spawn,
            command,
            reactor=reactor,
            check=check,
            stdin=stdin,
            cwd=cwd,
            env=env,
            preexec=preexec,
            guard=guard,
        )
        try:
            popen, started, since, prepared = await SPAWNER.run(spawn, _discard_spawned)
        except BaseException:
            orphans.ORPHANS.close(window, None)
            raise
        orphans.ORPHANS.own(popen.pid)
        try:
            handle = LocalHandle(
                popen,
                cookie,
                since=since,
                window=window,
                signal_codes=signal_codes,
                on_output=on_output,
                started=started,
                guardian=guard,
                prepared=prepared,
                reactor=reactor,
            )
        except BaseException:
            _discard(popen, prepared)
            orphans.ORPHANS.close(window, popen.pid)
            if guard is not None:
                guard.forget(popen.pid)
            raise
        try:
            try:
                yield handle
            except BaseException:
                await handle.end()
                raise
            await handle.end()
            handle._raise_failure()  # output that could not be taken, if nobody was told yet
        finally:
            handle.close()
            if guard is not None:
                # Reaped and its tree stopped: nothing left to watch (told with the next write).
                guard.forget(popen.pid, later=True)


class _Prepared(NamedTuple):
    """What a new local process needs before the loop watches it (made on the spawner thread)."""

    stdout: int  # the read end of its stdout pipe (non-blocking, close-on-exec)
    stderr: int  # the read end of its stderr pipe (likewise)
    pidfd: int | None  # its pidfd (None: Linux < 5.3)
    oom_before: int | None  # the cgroup's OOM kills before it could be one


def _output_pipe() -> tuple[int, int]:
    """A pipe for a child's output: the read end non-blocking, for the loop; the write end
    blocking, for the child (``os.pipe`` makes both close-on-exec; the child's ``dup2`` onto
    fd 1 or 2 clears that on its copy)."""
    read, write = os.pipe()
    try:
        os.set_blocking(read, False)
    except BaseException:
        os.close(read)
        os.close(write)
        raise
    return read, write


def _close_all(fds: Sequence[int | None]) -> None:
    for fd in fds:
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)


def _spawn(
    command: list[str],
    *,
    reactor: Reactor,
    check: str | None,
    stdin: Path | None,
    cwd: Path,
    env: Mapping[str, str],
    preexec: Callable[[], None] | None,
    guard: Guardian | None = None,
) -> tuple[subprocess.Popen[bytes], float, proctree.PidMark | None, _Prepared]:
    """On the spawner thread: check the program ``check`` (when a wrapper comes in front of it),
    take the pid mark, start ``command`` with ``stdin`` (a file, or an empty stdin) and pipes
    for its output, have ``guard`` watch its group, read when it started, open its pidfd; the
    pipes and the pidfd go into ``reactor``'s epoll set.

    Every file is opened with ``os`` calls and handed to ``subprocess`` as a descriptor: each
    system call lets go of the interpreter's lock and has to wait to get it back from the loop's
    thread, and a buffered file object costs three or four of them (``fstat``, ``ioctl``,
    ``lseek``) where one will do.
    """
    if check is not None:
        check_executable(check, env, cwd)
    since = proctree.pid_mark(_MARK_MAX_AGE)
    oom_before = _oom_kills()
    ends: list[int] = []  # what to close on the way out: stdin and the children's ends
    kept: list[int] = []  # ours for good, unless this fails
    try:
        stdin_fd = os.open(stdin or os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        ends.append(stdin_fd)
        out_read, out_write = _output_pipe()
        kept.append(out_read)
        ends.append(out_write)
        err_read, err_write = _output_pipe()
        kept.append(err_read)
        ends.append(err_write)
        reactor.register(out_read)
        reactor.register(err_read)
        before = proctree.boot_clock()
        popen = _popen(command, (stdin_fd, out_write, err_write), cwd, env, preexec)
        created = (before, proctree.boot_clock())
    except BaseException:
        _close_all(kept)
        raise
    finally:
        _close_all(ends)
    if guard is not None:
        guard.watch(popen.pid, proctree.start_ticks(created))
    pidfd: int | None = None
    try:
        started = proctree.started_at(popen.pid, since, created)
        pidfd = os.pidfd_open(popen.pid) if hasattr(os, "pidfd_open") else None
        if pidfd is not None:
            reactor.register(pidfd)
    except BaseException:
        _discard(popen, _Prepared(out_read, err_read, pidfd, oom_before))
        raise
    return popen, started, since, _Prepared(out_read, err_read, pidfd, oom_before)


def _discard_spawned(spawned: tuple[subprocess.Popen[bytes], float, object, _Prepared]) -> None:
    _discard(spawned[0], spawned[3])


def _popen(
    command: list[str],
    fds: tuple[int, int, int],
    cwd: Path,
    env: Mapping[str, str],
    preexec: Callable[[], None] | None,
) -> subprocess.Popen[bytes]:
    """Start ``command`` in a session of its own with ``fds`` as its stdin, stdout and stderr
    (the caller closes them); its pid is one of ``_MAINS`` from the moment it is known (on the
    spawner thread, not a hop later)."""
    popen = subprocess.Popen(
        command,
        stdin=fds[0],
        stdout=fds[1],
        stderr=fds[2],
        cwd=cwd,
        env=dict(env),
        start_new_session=True,
        # None with the guardian or setpriv (so vfork); else one prctl call, libc resolved before fork.
        preexec_fn=preexec,  # noqa: PLW1509
        close_fds=True,
    )
    _MAINS.add(popen.pid)
    return popen


def _discard(popen: subprocess.Popen[bytes], prepared: _Prepared) -> None:
    """Get rid of a process that was started for a caller that is gone (the loop closed), and
    of its pipes and pidfd."""
    with contextlib.suppress(OSError):
        os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()
    _MAINS.discard(popen.pid)
    _close_all([prepared.stdout, prepared.stderr, prepared.pidfd])


@functools.cache
def _has_oom_events() -> bool:
    """Whether this cgroup v2 tells its OOM kills (asked once: a cgroup keeps its files)."""
    return os.path.exists(_OOM_EVENTS)  # noqa: PTH110


def _oom_kills() -> int | None:
    """The cgroup's count of OOM kills so far, where cgroup v2 exposes it."""
    if not _has_oom_events():
        return None
    try:
        text = proctree.read_small(_OOM_EVENTS)
        for line in text.splitlines():
            key, _, value = line.partition(b" ")
            if key == b"oom_kill":
                return int(value)
    except (OSError, ValueError):
        return None
    return None
