"""``supervisor.worker.Worker`` with real threads: one thread does its jobs in order, two do
them side by side; what a job raises reaches its caller; the threads live on."""

from __future__ import annotations

import threading

import anyio
import pytest

from supervisor.worker import Worker

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_one_thread_does_its_jobs_one_at_a_time_in_order() -> None:
    worker = Worker("test-one")
    done: list[int] = []
    busy = threading.Lock()

    def job(number: int) -> int:
        assert busy.acquire(blocking=False), "two jobs at once on one thread"
        try:
            done.append(number)
            return number
        finally:
            busy.release()

    async with anyio.create_task_group() as tg:
        for number in range(20):
            tg.start_soon(worker.run, lambda n=number: job(n), lambda result: None)
    assert done == list(range(20))


async def test_two_threads_do_two_jobs_side_by_side() -> None:
    # Each job waits until the other has started: only side by side can both end.
    worker = Worker("test-two", threads=2)
    both = threading.Barrier(2, timeout=10)
    names: list[str] = []

    def job() -> str:
        both.wait()
        names.append(threading.current_thread().name)
        return "ok"

    results: list[str] = []

    async def one() -> None:
        results.append(await worker.run(job, lambda result: None))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(one)
            tg.start_soon(one)
    assert results == ["ok", "ok"]
    assert sorted(names) == ["test-two", "test-two-2"]


async def test_what_a_job_raises_reaches_its_caller_and_the_thread_lives_on() -> None:
    worker = Worker("test-raise", threads=2)

    def fails() -> None:
        raise OSError("no")

    with pytest.raises(OSError, match="no"):
        await worker.run(fails, lambda result: None)
    assert await worker.run(lambda: 7, lambda result: None) == 7
    alive = [t for t in threading.enumerate() if t.name.startswith("test-raise")]
    assert len(alive) == 2
    assert all(t.daemon for t in alive)
