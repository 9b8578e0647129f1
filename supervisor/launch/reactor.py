"""One epoll set for every local attempt's pipes and pidfd, watched by the event loop as one fd.

asyncio's ``add_reader`` costs each descriptor a selector key, a handle and an ``epoll_ctl`` on
the loop's thread when it is added and again when it is removed, and each event a turn of the
loop; three descriptors per attempt made that a good part of what the loop did for a quick
agent. Here the spawner thread adds each new descriptor to one epoll set of the loop's own
(``register``, edge-triggered), the loop reads that set when asyncio says it is readable
(``_ready``) and calls the callback ``attach``ed for each descriptor that has news, in the same
turn. Nothing is removed by hand: a descriptor leaves the set when it is closed.

Edge-triggered means an event is told once: a reader must read until ``EAGAIN`` (or come back
to it by itself, ``Pipes``), and news of a descriptor that has no callback yet (the child wrote
or exited before the loop took the handle) is kept until one is attached. A callback must also
bear being called with no news at all: a closed descriptor's number is soon another's, and the
kernel may still tell an event of the old one for a moment (a child that was being started on
another thread held a copy of it), so a pipe read then finds ``EAGAIN`` and a pidfd finds its
process still running.

This needs the asyncio backend on Linux, as the rest of the launcher does.
"""

from __future__ import annotations

import asyncio
import select
import weakref
from collections.abc import Callable

_EVENTS = select.EPOLLIN | select.EPOLLET  # EPOLLHUP and EPOLLERR are always told


class Reactor:
    """The epoll set of one event loop (``for_loop``); see the module docstring."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._epoll = select.epoll()
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._early: set[int] = set()  # descriptors with news and no callback yet
        loop.add_reader(self._epoll.fileno(), self._ready)

    def register(self, fd: int) -> None:
        """Watch ``fd`` for input, end of file or exit (from any thread)."""
        self._epoll.register(fd, _EVENTS)

    def attach(self, fd: int, callback: Callable[[], None]) -> None:
        """On the loop's thread: call ``callback`` whenever ``fd`` has news, now if it had."""
        self._callbacks[fd] = callback
        if fd in self._early:
            self._early.discard(fd)
            callback()

    def detach(self, fd: int) -> None:
        """On the loop's thread: no more calls for ``fd`` (it is about to be closed)."""
        self._callbacks.pop(fd, None)
        self._early.discard(fd)

    def _ready(self) -> None:
        for fd, _ in self._epoll.poll(0):
            callback = self._callbacks.get(fd)
            if callback is None:
                self._early.add(fd)
                continue
            try:
                callback()
            except Exception as exc:  # the other descriptors' news must not be lost with it
                asyncio.get_running_loop().call_exception_handler(
                    {"message": f"reactor callback for fd {fd} failed", "exception": exc}
                )

    def close(self) -> None:
        self._epoll.close()


_REACTORS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Reactor] = weakref.WeakKeyDictionary()


def for_loop(loop: asyncio.AbstractEventLoop) -> Reactor:
    """The reactor of ``loop`` (made at the first call; its epoll set closes with the loop)."""
    reactor = _REACTORS.get(loop)
    if reactor is None or reactor._epoll.closed:
        reactor = _REACTORS[loop] = Reactor(loop)
        weakref.finalize(loop, reactor.close)
    return reactor
