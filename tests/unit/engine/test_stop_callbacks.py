"""``Stop.on_request``: a callback called once when a stop is requested while its block runs
(at once when one was already), never after the block."""

from __future__ import annotations

import pytest

from supervisor.engine.gate import Stop

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_called_once_when_requested_inside_the_block_never_after_it() -> None:
    stop, calls = Stop(), []
    with stop.on_request(lambda: calls.append("inside")):
        assert calls == []
        stop.request()
        stop.request()  # a second request is the same stop
    assert calls == ["inside"]
    with stop.on_request(lambda: calls.append("late")):
        pass
    assert calls == ["inside", "late"]  # already requested: at once


async def test_not_called_for_a_request_after_the_block() -> None:
    stop, calls = Stop(), []
    with stop.on_request(lambda: calls.append("x")), stop.on_request(lambda: calls.append("y")):
        pass
    stop.request()
    assert calls == []
