"""The guardian (``supervisor.guardian``), with real processes and signals: when its pipe's write
end closes (the supervisor died), every process group it watches gets SIGTERM, what ignores that
SIGKILL after the grace, the whole group included; a forgotten group is left alone; it survives
SIGTERM and SIGINT itself; the supervisor's side replaces a killed guardian (telling the new one
every group still watched) and gives up after ``RESTARTS`` replacements.

The program is started here as the supervisor starts it (``python -I -S guardian.py GRACE``),
with a short grace, and the pipe's write end is held by the test, which closes it to play the
supervisor's death. The end-to-end case (SIGKILL of a real launcher) is in ``tests/test_local.py``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from supervisor import guardian
from supervisor.guardian import Guardian

pytestmark = pytest.mark.slow

IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print(flush=True); time.sleep(600)"
)
# A group leader with a helper in its group (not a session of its own), both ignoring SIGTERM.
WITH_HELPER = (
    "import os, signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "h = subprocess.Popen([sys.executable, '-c', " + repr(IGNORES_TERM) + "], stdout=subprocess.PIPE); "
    "h.stdout.readline(); print(h.pid, flush=True); time.sleep(600)"
)


class Program:
    """The guardian's program with a pipe whose write end this test holds."""

    def __init__(self, grace: float) -> None:
        read, self.write = os.pipe()
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", guardian.__file__, str(grace)],
            stdin=read,
            start_new_session=True,
        )
        os.close(read)

    def tell(self, line: str) -> None:
        os.write(self.write, line.encode() + b"\n")

    def supervisor_dies(self) -> None:
        os.close(self.write)


def group(code: str) -> subprocess.Popen[str]:
    """A Python child leading a session (and group) of its own; it prints a line once ready."""
    child = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert child.stdout is not None
    child.stdout.readline()
    return child


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    made: list[subprocess.Popen[str]] = []
    yield made
    for child in made:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


def test_the_watched_groups_get_sigterm_then_sigkill_when_the_write_end_closes(
    children: list[subprocess.Popen[str]],
) -> None:
    """A plain sleeper dies of SIGTERM at once; a leader that ignores SIGTERM, and the helper in
    its group, die of SIGKILL after the grace; the guardian exits then."""
    program = Program(grace=1.0)
    sleeper = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    stubborn = subprocess.Popen(
        [sys.executable, "-c", WITH_HELPER], stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    children += [sleeper, stubborn]
    assert stubborn.stdout is not None
    helper = psutil.Process(int(stubborn.stdout.readline()))
    assert os.getpgid(helper.pid) == stubborn.pid
    program.tell(f"+{sleeper.pid}")
    program.tell(f"+{stubborn.pid}")
    time.sleep(0.3)  # the guardian reads the lines (and their start times) as they come
    started = time.monotonic()
    program.supervisor_dies()
    assert sleeper.wait(timeout=5) == -signal.SIGTERM
    assert stubborn.wait(timeout=10) == -signal.SIGKILL
    assert time.monotonic() - started >= 0.9  # it had its grace
    helper.wait(timeout=5)
    assert program.proc.wait(timeout=5) == 0


def test_a_forgotten_group_is_left_alone(children: list[subprocess.Popen[str]]) -> None:
    program = Program(grace=0.5)
    done = group(IGNORES_TERM)
    kept = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    children += [done, kept]
    program.tell(f"+{done.pid}")
    program.tell("+not-a-pid")  # a line it cannot read is ignored, not its end
    program.tell(f"+{kept.pid}")
    program.tell(f"-{done.pid}")
    time.sleep(0.3)
    program.supervisor_dies()
    assert kept.wait(timeout=5) == -signal.SIGTERM
    assert program.proc.wait(timeout=5) == 0
    assert done.poll() is None  # the supervisor had said it was over: not the guardian's


def test_the_guardian_ignores_sigterm_and_sigint(children: list[subprocess.Popen[str]]) -> None:
    """``pkill pagent`` or a Ctrl-C reaching it does not end it: it must outlive the supervisor."""
    program = Program(grace=0.5)
    sleeper = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    children.append(sleeper)
    program.tell(f"+{sleeper.pid}")
    time.sleep(0.3)
    program.proc.send_signal(signal.SIGTERM)
    program.proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    assert program.proc.poll() is None
    program.supervisor_dies()
    assert sleeper.wait(timeout=5) == -signal.SIGTERM
    assert program.proc.wait(timeout=5) == 0


def killed(own: Guardian) -> int:
    """SIGKILL ``own``'s guardian (as an agent could) and wait until ``check`` replaces it; the
    new guardian's pid (the same one while it is not replaced)."""
    old = own.pid
    assert old is not None
    os.kill(old, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while own.pid == old and time.monotonic() < deadline:
        own.check()
        time.sleep(0.02)
    return own.pid or 0


def test_a_killed_guardian_is_replaced_and_the_new_one_watches_every_group(
    children: list[subprocess.Popen[str]],
) -> None:
    """An agent SIGKILLs the guardian: the next write (``check``, each liveness tick) finds its
    pipe broken, reaps it and starts a new one, told every group still watched, a forgotten one
    not. When the supervisor then dies, the new guardian stops the watched group."""
    own = Guardian()
    started: list[int] = []
    own.on_start(started.append)
    assert own.start()
    assert own.start()  # once per process: the same guardian
    first = own.pid
    assert first is not None
    assert started == [first]
    # Popen returns once the exec has begun; the new command line shows a moment later.
    deadline = time.monotonic() + 5
    while not psutil.Process(first).cmdline() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert psutil.Process(first).cmdline()[1:4] == ["-I", "-S", guardian.__file__]
    kept = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    gone = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    children += [kept, gone]
    assert own.watch(kept.pid)
    assert own.watch(gone.pid)
    own.forget(gone.pid)
    old = own._proc
    second = killed(own)
    assert second not in (0, first)
    assert started == [first, second]  # the launcher owns it too: never taken for an orphan
    assert own.running
    assert old is not None
    assert old.returncode == -signal.SIGKILL
    assert own._fd is not None
    time.sleep(0.3)  # the new guardian has read its list
    os.close(own._fd)  # the supervisor dies
    assert kept.wait(timeout=10) == -signal.SIGTERM
    assert gone.poll() is None  # forgotten before the guardian was replaced: left alone
    assert own._proc is not None
    assert own._proc.wait(timeout=10) == 0


def test_a_guardian_killed_again_and_again_is_given_up_on(
    children: list[subprocess.Popen[str]],
) -> None:
    """After ``RESTARTS`` replacements none is started again: ``watch`` says False and
    ``running`` turns false, so the launcher asks for the parent-death signal itself."""
    own = Guardian()
    assert own.start()
    sleeper = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    children.append(sleeper)
    assert own.watch(sleeper.pid)
    pids = {own.pid}
    for _ in range(guardian.RESTARTS):
        pids.add(killed(own))
    assert len(pids) == guardian.RESTARTS + 1
    assert own.running
    last = own._proc
    assert last is not None
    os.kill(last.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while own.check() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not own.running
    assert not own.watch(sleeper.pid)
    assert last.returncode == -signal.SIGKILL


def test_the_program_needs_nothing_but_the_standard_library(tmp_path: Path) -> None:
    """It runs from a copy of its file alone, with site-packages off (``-S``): no import of pagent
    or of what pagent depends on."""
    copy = tmp_path / "guardian.py"
    copy.write_text(Path(guardian.__file__).read_text())
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-I", "-S", str(copy), "0.1"], stdin=read)
    os.close(read)
    sleeper = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        os.write(write, f"+{sleeper.pid}\n".encode())
        time.sleep(0.3)
        os.close(write)
        assert sleeper.wait(timeout=5) == -signal.SIGTERM
        assert proc.wait(timeout=5) == 0
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
        sleeper.wait()


def test_a_stopped_guardian_is_continued(children: list[subprocess.Popen[str]]) -> None:
    """An agent SIGSTOPs the guardian (it would then never read the end of its pipe): ``check``
    (each liveness tick) continues it, and it still stops the watched group when the supervisor
    dies."""
    own = Guardian()
    assert own.start()
    pid = own.pid
    assert pid is not None
    sleeper = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    children.append(sleeper)
    assert own.watch(sleeper.pid)
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while psutil.Process(pid).status() != psutil.STATUS_STOPPED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert psutil.Process(pid).status() == psutil.STATUS_STOPPED
    assert own.check()
    assert own.pid == pid  # the same guardian, not a new one
    deadline = time.monotonic() + 5
    while psutil.Process(pid).status() == psutil.STATUS_STOPPED and time.monotonic() < deadline:
        time.sleep(0.02)
    assert psutil.Process(pid).status() != psutil.STATUS_STOPPED
    assert own._fd is not None
    os.close(own._fd)  # the supervisor dies
    assert sleeper.wait(timeout=10) == -signal.SIGTERM
    assert own._proc is not None
    assert own._proc.wait(timeout=10) == 0


def test_a_group_forgotten_later_is_told_with_the_next_write(children: list[subprocess.Popen[str]]) -> None:
    """``forget(later=True)`` (the launcher's, for a group that is over) writes nothing itself:
    the next ``watch`` or ``check`` carries it. Told, the group is left alone; a group forgotten
    later but never told is still the guardian's (which is why only a group that is gone may be
    forgotten later)."""
    own = Guardian()
    assert own.start()
    told, untold, by_check, kept = (
        subprocess.Popen(["sleep", "600"], start_new_session=True, text=True) for _ in range(4)
    )
    children += [told, untold, by_check, kept]
    for proc in (told, untold, by_check):
        assert own.watch(proc.pid)
    own.forget(told.pid, later=True)
    assert own._later == [told.pid]
    assert own.watch(kept.pid)  # carries the "-told" line
    assert own._later == []
    own.forget(by_check.pid, later=True)
    assert own.check()  # a liveness tick carries it too
    own.forget(untold.pid, later=True)  # the supervisor dies before any further write
    assert own._fd is not None
    time.sleep(0.3)
    os.close(own._fd)
    for proc in (untold, kept):
        assert proc.wait(timeout=10) == -signal.SIGTERM
    assert own._proc is not None
    assert own._proc.wait(timeout=10) == 0
    assert told.poll() is None
    assert by_check.poll() is None


def _start_ticks(pid: int) -> int:
    text = Path(f"/proc/{pid}/stat").read_bytes()
    return int(text[text.rindex(b")") + 2 :].split()[19])


def test_a_start_time_on_the_watch_line_is_the_one_checked(children: list[subprocess.Popen[str]]) -> None:
    """``+PID START``: the guardian takes the leader's start time from the line instead of
    /proc, and at the end stops the group only if its leader is that very process (one whose
    start differs is another process with a reused pid: left alone)."""
    program = Program(grace=0.5)
    right = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    wrong = subprocess.Popen(["sleep", "600"], start_new_session=True, text=True)
    children += [right, wrong]
    program.tell(f"+{right.pid} {_start_ticks(right.pid)}")
    program.tell(f"+{wrong.pid} {_start_ticks(wrong.pid) - 1000}")
    time.sleep(0.3)
    program.supervisor_dies()
    assert right.wait(timeout=5) == -signal.SIGTERM
    assert program.proc.wait(timeout=5) == 0
    assert wrong.poll() is None


def test_lines_written_in_a_burst_are_all_read_before_the_end() -> None:
    """Many watch lines, then the end of the pipe at once: the guardian still finds every line
    before the end and stops every group."""
    program = Program(grace=0.5)
    sleepers = [subprocess.Popen(["sleep", "600"], start_new_session=True) for _ in range(20)]
    try:
        for sleeper in sleepers:
            program.tell(f"+{sleeper.pid} {_start_ticks(sleeper.pid)}")
        program.supervisor_dies()
        assert [s.wait(timeout=5) for s in sleepers] == [-signal.SIGTERM] * len(sleepers)
        assert program.proc.wait(timeout=5) == 0
    finally:
        for sleeper in sleepers:
            if sleeper.poll() is None:
                sleeper.kill()
                sleeper.wait()


def test_the_supervisors_side_writes_the_start_time_it_was_given() -> None:
    read, write = os.pipe()
    keeper = Guardian()
    keeper._fd = write  # a pipe of this test's instead of a guardian's
    try:
        assert keeper.watch(4321, 987654)
        assert keeper.watch(4322)
        assert os.read(read, 100) == b"+4321 987654\n+4322\n"
    finally:
        os.close(read)
        os.close(write)
