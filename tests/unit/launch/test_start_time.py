"""A new process's start time without /proc (``proctree.started_at`` with ``between``): exactly
what psutil's ``create_time`` says, for real processes, whichever way it was found."""

from __future__ import annotations

import subprocess

import psutil
import pytest

from supervisor.launch import proctree


def test_the_start_time_from_the_boot_clock_is_psutils_create_time(monkeypatch: pytest.MonkeyPatch) -> None:
    mark = proctree.pid_mark()
    assert mark is not None
    read = proctree.read_small
    reads: list[str] = []

    def counted(path: str) -> bytes:
        reads.append(path)
        return read(path)

    monkeypatch.setattr(proctree, "read_small", counted)
    for _ in range(50):
        before = proctree.boot_clock()
        child = subprocess.Popen(["sleep", "5"])
        after = proctree.boot_clock()
        try:
            started = proctree.started_at(child.pid, mark, (before, after))
            assert started == psutil.Process(child.pid).create_time()
        finally:
            child.kill()
            child.wait()
    # Now and then both readings fall into two ticks and /proc is read; mostly it is not.
    assert len(reads) < 25


def test_a_start_across_two_ticks_is_read_from_proc() -> None:
    mark = proctree.pid_mark()
    child = subprocess.Popen(["sleep", "5"])
    try:
        # Readings a whole second apart: the start could be in any of 100 ticks.
        now = proctree.boot_clock()
        started = proctree.started_at(child.pid, mark, (now - 1_000_000_000, now))
        assert started == psutil.Process(child.pid).create_time()
    finally:
        child.kill()
        child.wait()
