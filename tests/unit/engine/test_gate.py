"""``Stop.before``: an await the stop request cancels (at once, or after a grace), its result or
``None``, and what the call raises, unwrapped."""

from __future__ import annotations

import anyio
import pytest

from supervisor.engine.gate import Stop

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def answer(delay: float) -> int:
    await anyio.sleep(delay)
    return 42


async def test_the_result_when_no_stop_comes() -> None:
    assert await Stop().before(answer, 0) == 42


async def test_nothing_runs_once_a_stop_was_requested() -> None:
    stop = Stop()
    stop.request()
    ran = []

    async def record() -> int:
        ran.append(1)
        return 1

    assert await stop.before(record) is None
    assert ran == []


async def test_a_stop_cancels_the_wait_at_once() -> None:
    stop = Stop()

    async def soon() -> None:
        await anyio.sleep(0.01)
        stop.request()

    with anyio.fail_after(2):
        async with anyio.create_task_group() as tg:
            tg.start_soon(soon)
            assert await stop.before(answer, 60) is None


async def test_a_grace_lets_a_short_call_finish_and_cuts_a_long_one() -> None:
    stop = Stop()
    stop.request()
    with anyio.fail_after(2):
        assert await stop.before(answer, 0.01, grace=1.0) == 42
        assert await stop.before(answer, 60, grace=0.05) is None


async def test_what_the_call_raises_is_raised_unwrapped() -> None:
    async def fail() -> None:
        raise ValueError("git said no")

    with pytest.raises(ValueError, match="git said no"):
        await Stop().before(fail)
