"""The one thread that starts every attempt's process, so that starting one never blocks the loop.

``subprocess`` starts a child with vfork: the calling thread is suspended until the child has
exec'd its program, which on a busy machine takes as long as the scheduler makes the new child
wait for a CPU (measured: 0.3 ms on a quiet 2-core VM, 4 ms under a load of 5). On the event
loop's thread that is time in which nothing else of the run happens; on this thread the loop
goes on (the interpreter lets go of the GIL around vfork and around the wait for the exec).

The thread is started once and lives as long as the process, never ending before it: Linux
sends a child's parent-death signal (``PR_SET_PDEATHSIG``, which ``setpriv`` asks for in the
child) when the *thread* that created the child ends, so a thread that outlives every attempt
is what keeps "the agent dies with the supervisor" true (anyio's worker threads end after ten
idle seconds, the event loop's own thread would do too). It is a daemon thread: it never holds
the interpreter's exit back, and it ends only with the process.

The children it starts are listed under this thread in ``/proc/PID/task/TID/children``, not
under the main thread, whose list ``supervisor.launch.orphans`` reads: what an attempt leaves
behind when its processes exit is still re-parented to the main thread (the kernel hands
orphans to the subreaper's first live thread).
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


class Spawner:
    """Runs start-up calls (``Popen``) on one long-lived thread, one at a time, in order."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[_Job] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="pagent-spawner", daemon=True)
                self._thread.start()

    def _serve(self) -> None:
        # Never returns: this thread's end would send every agent it started the parent-death
        # signal. Whatever a call raises goes back to its caller.
        while True:
            call, loop, future, discard = self._jobs.get()
            try:
                result: Any = call()
            except BaseException as exc:  # handed to the awaiting task as it is
                _hand_back(loop, future, None, exc, discard)
            else:
                _hand_back(loop, future, result, None, discard)

    async def run(self, call: Callable[[], T], discard: Callable[[T], None]) -> T:
        """``call()`` on the spawner thread; its result (or what it raised) here.

        The wait is shielded: once asked for, a process is always started and handed over, so a
        cancelled caller can still stop it. If the loop gives up on the result all the same
        (it is closing), ``discard(result)`` gets rid of it.
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


SPAWNER = Spawner()
