"""An attempt's output pipes, read on the event loop's thread by reader callbacks.

No task per pipe: each pipe is in the loop's epoll set (``supervisor.launch.reactor``, where the
spawner put it) and read whenever it has something, until EOF; each chunk goes to the attempt's
``on_output`` as it arrives, in order per stream. The set is edge-triggered: a pipe is read
until it is empty, or, after ``_READS_PER_WAKE`` reads, read on in a later turn of the loop (so
that one busy pipe does not hold up the others), never left with news unread. What ``on_output``
raises stops the reading of every pipe and is kept in ``failure`` for the handle to raise in the
attempt's task (a callback has no task to raise in).

This needs the asyncio backend, on which pagent runs (``anyio.run`` without a backend).
"""

from __future__ import annotations

import asyncio
import functools
import os
from collections.abc import Callable, Sequence

from supervisor.launch.reactor import Reactor
from supervisor.seam import OutputCallback, Stream

_READ_SIZE = 256 * 1024
_READS_PER_WAKE = 16  # then the loop runs other callbacks before this pipe is read on


class Pipes:
    """The pipes of one process, read until EOF (see the module docstring)."""

    def __init__(
        self,
        pipes: Sequence[tuple[int, Stream]],
        on_output: OutputCallback,
        on_failure: Callable[[], None],
        reactor: Reactor,
    ) -> None:
        """``pipes``: read ends, as descriptors, each read as ``Stream``; they must be
        non-blocking already and registered with ``reactor`` (the launcher does both off the
        loop); they are Pipes' to close."""
        self._loop = asyncio.get_running_loop()
        self._reactor = reactor
        self._on_output = on_output
        self._on_failure = on_failure  # told once, when on_output has raised
        self._fds = [fd for fd, _ in pipes]
        # All of them before the first is attached: attaching may read a pipe to its end at once.
        self._reading = set(self._fds)
        self.done = asyncio.Event()  # every pipe at EOF, or no longer read
        self.failure: BaseException | None = None
        for fd, stream in pipes:
            reactor.attach(fd, functools.partial(self._readable, fd, stream))
        if not self._reading:
            self.done.set()

    def _readable(self, fd: int, stream: Stream) -> None:
        if fd not in self._reading:  # read on after it was dropped, or closed
            return
        for _ in range(_READS_PER_WAKE):
            try:
                data = os.read(fd, _READ_SIZE)
            except BlockingIOError:
                return
            except OSError as exc:
                self._fail(exc)
                return
            if not data:
                self._drop(fd)
                return
            try:
                self._on_output(data, stream)
            except BaseException as exc:  # raised in the attempt's task instead
                self._fail(exc)
                return
        # Not empty yet, and no new event comes for what is in it already: on, after the others.
        self._loop.call_soon(self._readable, fd, stream)

    def _fail(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        for fd in list(self._reading):
            self._drop(fd)
        self._on_failure()

    def _drop(self, fd: int) -> None:
        if fd in self._reading:
            self._reading.discard(fd)
            self._reactor.detach(fd)
            if not self._reading:
                self.done.set()

    def close(self) -> None:
        """Stop reading and close every pipe (what is still in them is not read any more)."""
        for fd in list(self._reading):
            self._reading.discard(fd)
            self._reactor.detach(fd)
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)
