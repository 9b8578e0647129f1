"""``Worker``: long-lived threads that run blocking calls for the event loop.

The launcher starts every attempt's process on two (``supervisor.launch.spawner``): the loop
goes on with the other attempts meanwhile, since the interpreter lets go of the GIL around each
system call.
With one thread, jobs are done in the order given and handed back in that order, so attempts
that asked in rank order go on in that order; with more, they are taken in that order and done
side by side. The hand-off is a queue and one ``call_soon_threadsafe``: a fraction of what a hop
through anyio's worker threads costs.

The threads are daemon threads, started when first needed, and they never end before the
process (a thread that ends would send the children it started their parent-death signal):
they never hold the interpreter's exit back.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

T = TypeVar("T")

_Job = tuple[Callable[[], Any], asyncio.AbstractEventLoop, "asyncio.Future[Any]", Callable[[Any], None]]


class Worker:
    """Runs blocking calls on ``threads`` long-lived threads named ``name`` (see the module
    docstring): one at a time and in order with one thread, side by side with more."""

    def __init__(self, name: str, threads: int = 1) -> None:
        self._name = name
        self._size = threads
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []  # all of them, once started
        self._lock = threading.Lock()

    def _ensure_thread(self) -> None:
        with self._lock:
            if not self._threads:
                for number in range(self._size):
                    name = self._name if number == 0 else f"{self._name}-{number + 1}"
                    thread = threading.Thread(target=self._serve, name=name, daemon=True)
                    thread.start()
                    self._threads.append(thread)

    def _serve(self) -> None:
        # Never returns (see the module docstring). Whatever a call raises goes back to its caller.
        while True:
            call, loop, future, discard = self._jobs.get()
            try:
                result: Any = call()
            except BaseException as exc:  # handed to the awaiting task as it is
                _hand_back(loop, future, None, exc, discard)
            else:
                _hand_back(loop, future, result, None, discard)

    async def run(self, call: Callable[[], T], discard: Callable[[T], None]) -> T:
        """``call()`` on this worker's thread; its result (or what it raised) here.

        The wait is shielded: once asked for, the call always runs and its result is handed
        over, so a cancelled caller can still release it (stop a process, close a file). If the
        loop gives up on the result all the same (it is closing), ``discard(result)`` gets rid
        of it.
        """
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put((call, loop, future, discard))
        with anyio.CancelScope(shield=True):
            await future
        return future.result()


def _hand_back(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future[Any],
    result: Any,
    error: BaseException | None,
    discard: Callable[[Any], None],
) -> None:
    """Settle ``future`` on its loop's thread; ``discard`` a result nobody can take any more."""

    def settle() -> None:
        if future.cancelled():
            if error is None:
                discard(result)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed: nobody will ever take it
        if error is None:
            with contextlib.suppress(Exception):
                discard(result)
