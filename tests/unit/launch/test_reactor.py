"""The loop's epoll set for pipes and pidfds (``supervisor.launch.reactor``), with real pipes and
real processes: edge-triggered news is never lost, whether it comes before a callback exists,
in more reads than one wake-up allows, or not at all (a call with no news changes nothing)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import anyio
import pytest

from supervisor.launch import pipes as pipes_module
from supervisor.launch.pipes import Pipes
from supervisor.launch.process import LocalLauncher
from supervisor.launch.reactor import Reactor, for_loop
from supervisor.seam import Stream

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _pipe() -> tuple[int, int]:
    read, write = os.pipe()
    os.set_blocking(read, False)
    return read, write


async def _read_to_end(read: int, stream: Stream, reactor: Reactor) -> list[bytes]:
    """What ``Pipes`` reads from ``read`` until its end (5 s at most)."""
    got: list[bytes] = []
    pipes = Pipes([(read, stream)], lambda data, stream: got.append(data), lambda: None, reactor)
    try:
        with anyio.fail_after(5):
            await pipes.done.wait()
    finally:
        pipes.close()
    return got


async def test_a_pipe_is_read_to_its_end_in_more_reads_than_one_wake_allows(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One byte per read and 16 reads per wake-up: 1000 bytes need 63 wake-ups, of which the
    # edge-triggered set tells only the first; the rest must come from Pipes itself.
    monkeypatch.setattr(pipes_module, "_READ_SIZE", 1)
    reactor = for_loop(asyncio.get_running_loop())
    read, write = _pipe()
    reactor.register(read)
    os.write(write, bytes(range(250)) * 4)
    os.close(write)
    got = await _read_to_end(read, Stream.STDOUT, reactor)
    assert b"".join(got) == bytes(range(250)) * 4


async def test_news_that_came_before_the_callback_is_told_when_it_is_attached() -> None:
    reactor = for_loop(asyncio.get_running_loop())
    read, write = _pipe()
    reactor.register(read)
    os.write(write, b"early")
    os.close(write)
    await anyio.sleep(0.05)  # the loop reads the set meanwhile: the news waits for a callback
    assert await _read_to_end(read, Stream.STDERR, reactor) == [b"early"]


async def test_a_call_with_no_news_changes_nothing(tmp_path: Path) -> None:
    # A closed descriptor's number is soon another's, and the kernel may tell an old event once
    # more: a pipe read then finds nothing, a pidfd finds its process still running.
    launcher = LocalLauncher()
    code = "import sys, time; sys.stdin.read(); time.sleep(30)"
    got: list[bytes] = []
    async with launcher.start(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PAGENT_COOKIE": f"test-reactor-{os.getpid()}"},
        stdin=None,
        cookie=f"test-reactor-{os.getpid()}",
        on_output=lambda data, stream: got.append(data),
    ) as handle:
        handle._exited()  # no news: it runs on
        for fd, stream in ((handle._pipes._fds[0], Stream.STDOUT), (handle._pipes._fds[1], Stream.STDERR)):
            handle._pipes._readable(fd, stream)
        assert handle.exited() is None
        assert not handle._pipes.done.is_set()
        await handle.stop(1.0)
        with anyio.fail_after(10):
            exit = await handle.wait()
    assert exit.signal is not None
    assert got == []
