"""``run_attempt`` with a scripted executor and a clock that never sleeps: what an attempt that
announced a wait (an API retry) is allowed, and what it fails of when it is stopped during one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.agents.base import Outcome, Waiting
from supervisor.engine.attempt import AttemptResult, run_attempt
from supervisor.engine.gate import Stop
from supervisor.engine.logfile import LogFile
from supervisor.plan.model import TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import AttemptKey, AttemptSpec, Exit
from tests.fakes import FakeClock, FakeExecutor, FakeHandle, Play

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Announcing:
    """A parser for a made-up agent: a line ``wait SECONDS [REASON]`` announces a wait, any other
    line ends it; no result ever (the attempt has to be stopped)."""

    finished = False
    status = None

    def __init__(self) -> None:
        self.waiting: Waiting | None = None

    def feed(self, data: bytes) -> None:
        for line in data.decode().splitlines():
            words = line.split()
            if words[:1] == ["wait"]:
                self.waiting = Waiting(float(words[1]), words[2] if len(words) > 2 else None)
            else:
                self.waiting = None

    def feed_stderr(self, data: bytes) -> None:
        pass

    def notices(self) -> list[str]:
        return []

    def outcome(self, exit: Exit) -> Outcome:
        return Outcome(succeeded=False, reason=Reason.NO_RESULT)


class Recorder:
    def running(self, ref: str, pid: int | None) -> None:
        pass

    def heartbeat(self, **sample: Any) -> None:
        pass


async def attempt(tmp_path: Path, output: list[bytes], **settings: Any) -> tuple[AttemptResult, float, str]:
    """One attempt that prints ``output`` and then hangs; its result, how long it ran on the
    fake clock, and its log."""
    clock = FakeClock()
    started = clock.now
    prompt = tmp_path / "prompt.txt"  # the fake executor never reads it (without one: a verify run)
    spec = AttemptSpec(AttemptKey("p", "r", "t", 1), ("agent",), {}, tmp_path, prompt)
    log = LogFile(tmp_path / "t.1.log")
    try:
        with anyio.fail_after(10):
            result = await run_attempt(
                spec=spec,
                parser=Announcing(),
                settings=TaskSettings(kill_grace=1.0, **settings),
                log=log,
                executor=FakeExecutor({"t": [Play(output=output, hang=True)]}),
                clock=clock,
                recorder=Recorder(),
                stop_requested=Stop(),
                emit=lambda event: None,
            )
    finally:
        log.close()
    return result, clock.now - started, (tmp_path / "t.1.log").read_text()


async def test_without_an_announcement_silence_is_a_stall(tmp_path: Path) -> None:
    result, took, _ = await attempt(tmp_path, [b"working\n"], stall_timeout=2.0, timeout=600.0)
    assert result.reason == Reason.STALLED
    assert 2.0 <= took < 3.0


async def test_an_announced_wait_is_allowed_and_a_stop_during_it_takes_the_waits_reason(
    tmp_path: Path,
) -> None:
    """``wait 30 rate-limited`` then silence: not stalled at 2 s but at 30 + 2 s, and the attempt
    fails ``rate-limited`` (the wait's reason), not ``stalled``."""
    result, took, log = await attempt(tmp_path, [b"wait 30 rate-limited\n"], stall_timeout=2.0, timeout=600.0)
    assert result.reason == Reason.RATE_LIMITED
    assert 32.0 <= took < 33.0
    assert "stopping the agent: stalled" in log
    assert "waiting out an announced retry: rate-limited" in log


async def test_a_timeout_during_an_announced_wait_takes_the_waits_reason(tmp_path: Path) -> None:
    result, took, _ = await attempt(tmp_path, [b"wait 3600 rate-limited\n"], stall_timeout=2.0, timeout=10.0)
    assert result.reason == Reason.RATE_LIMITED
    assert 10.0 <= took < 11.0


async def test_a_wait_without_a_reason_only_delays_the_stall(tmp_path: Path) -> None:
    result, took, _ = await attempt(tmp_path, [b"wait 30\n"], stall_timeout=2.0, timeout=600.0)
    assert result.reason == Reason.STALLED
    assert 32.0 <= took < 33.0


async def test_output_after_the_announcement_ends_the_wait(tmp_path: Path) -> None:
    """The agent spoke again (its retry was answered): a stall later is a plain stall."""
    result, took, _ = await attempt(
        tmp_path, [b"wait 30 rate-limited\n", b"answered\n"], stall_timeout=2.0, timeout=600.0
    )
    assert result.reason == Reason.STALLED
    assert 2.0 <= took < 3.0


async def test_a_liveness_tick_that_raises_ends_the_attempt_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ticks are timer callbacks, with nobody to raise to: what one raises is raised by the
    attempt's own await instead of leaving a hanging agent unwatched (no timeout any more)."""

    def broken(self: FakeHandle) -> None:
        raise RuntimeError("psutil broke")

    monkeypatch.setattr(FakeHandle, "sample", broken)
    with pytest.raises(RuntimeError, match="psutil broke"):
        await attempt(tmp_path, [b"working\n"], stall_timeout=2.0, timeout=600.0)


async def test_a_stop_that_raises_ends_the_attempt_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: FakeHandle, grace: float) -> None:
        raise OSError("cannot signal")

    monkeypatch.setattr(FakeHandle, "stop", broken)
    with pytest.raises(RuntimeError, match=r"stopping the agent failed: .*cannot signal"):
        await attempt(tmp_path, [b"working\n"], stall_timeout=2.0, timeout=600.0)


async def test_an_attempt_leaves_no_task_and_no_timer_behind(tmp_path: Path) -> None:
    """Stopped at its stall, then over: the stop's task has ended and no tick is still set."""
    before = asyncio.all_tasks()
    result, _, _ = await attempt(tmp_path, [b"working\n"], stall_timeout=2.0, timeout=600.0)
    assert result.reason == Reason.STALLED
    assert asyncio.all_tasks() == before
    loop = asyncio.get_running_loop()
    timers = [handle for handle in getattr(loop, "_scheduled", []) if not handle.cancelled()]
    assert not [handle for handle in getattr(loop, "_ready", []) if "_on_tick" in repr(handle)]
    assert not [handle for handle in timers if "_on_tick" in repr(handle)]
