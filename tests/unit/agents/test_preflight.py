"""The preflight's decisions, with a scripted executor playing the Claude CLI's result events and
an invented clock: what stops the run, what is retried, and that the whole check is bounded."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

import anyio
import pytest

from supervisor.agents import preflight
from supervisor.agents.claude import ClaudeParser
from supervisor.plan.model import AgentSpec
from supervisor.seam import AttemptKey, AttemptSpec
from tests.fakes import FakeExecutor, Play

pytestmark = pytest.mark.anyio

AGENT = AgentSpec("cc", ("claude", "-p"), MappingProxyType({}), "claude", preflight=True)
KEY = AttemptKey("plan", "preflight", "cc", 1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def result(**fields: Any) -> Play:
    """A CLI run that prints one ``result`` event and exits (1 when it is an error)."""
    event = {"type": "result", "subtype": "success", "is_error": True, **fields}
    return Play(code=1 if event["is_error"] else 0, output=[json.dumps(event).encode() + b"\n"])


OK = result(is_error=False, result="OK")
RATE_LIMITED = result(api_error_status=429, result="API Error: Request rejected (429) · rate")
OVERLOADED = result(api_error_status=529, result="API Error: 529 overloaded")
SERVER_ERROR = result(api_error_status=500, result="API Error: 500")
AUTH = result(api_error_status=401, result="Invalid API key · Fix external API key")
BILLING = result(result="Credit balance is too low")
CRASH = Play(code=1, output=[b"Segmentation fault\n"])


class Sequenced(FakeExecutor):
    """Plays ``plays`` in order, one per prompt (the preflight's key never changes); each prompt
    takes ``seconds`` on the invented clock."""

    def __init__(self, plays: Sequence[Play], clock: list[float], seconds: float = 1.0) -> None:
        super().__init__({})
        self.queue = list(plays)
        self.clock = clock
        self.seconds = seconds
        self.prompts = 0

    def _play(self, spec: AttemptSpec) -> Play:
        self.prompts += 1
        self.clock[0] += self.seconds
        return self.queue.pop(0) if len(self.queue) > 1 else self.queue[0]


async def check(plays: Sequence[Play], seconds: float = 1.0, max_wait: float = 0.0) -> tuple[Any, ...]:
    """Run the preflight; (its version or the error's text, notices, sleeps, prompts, time)."""
    now = [0.0]
    slept: list[float] = []
    notices: list[str] = []

    async def sleep(delay: float) -> None:
        slept.append(delay)
        now[0] += delay
        await anyio.lowlevel.checkpoint()

    executor = Sequenced(plays, now, seconds)
    try:
        outcome: str = await preflight.run_preflight(
            AGENT,
            executor,
            KEY,
            ClaudeParser(),
            max_wait=max_wait,
            new_parser=ClaudeParser,
            notice=notices.append,
            sleep=sleep,
            clock=lambda: now[0],
        )
    except preflight.PreflightError as exc:
        outcome = f"error: {exc}"
    return outcome, notices, slept, executor.prompts, now[0]


async def test_a_429_then_a_529_are_retried_with_backoff_and_do_not_stop_the_run() -> None:
    outcome, notices, slept, prompts, _ = await check([RATE_LIMITED, OVERLOADED, OK])
    assert outcome == "fake 1.0"
    assert (slept, prompts) == ([5.0, 10.0], 3)
    assert notices[0].startswith("agent 'cc' preflight failed: rate-limited: API Error: Request rejected")
    assert notices[0].endswith("; trying again in 5s")
    assert notices[1].endswith("; trying again in 10s")


@pytest.mark.parametrize("play", [RATE_LIMITED, SERVER_ERROR, CRASH], ids=["429", "500", "crash"])
async def test_a_transient_failure_that_persists_is_let_through_after_the_last_try(play: Play) -> None:
    outcome, notices, slept, prompts, _ = await check([play])
    assert outcome == "fake 1.0"
    assert (slept, prompts) == ([5.0, 10.0, 20.0], preflight.TRIES)
    assert notices[-1].endswith(f"; going on after {preflight.TRIES} tries (the tasks retry by their policy)")


@pytest.mark.parametrize(
    ("play", "reason"), [(AUTH, "auth"), (BILLING, "billing")], ids=["401", "credit-balance"]
)
async def test_a_deterministic_failure_stops_the_run_at_once(play: Play, reason: str) -> None:
    outcome, notices, slept, prompts, _ = await check([play, OK])
    assert outcome.startswith(f"error: agent 'cc' preflight failed: {reason}")
    assert (notices, slept, prompts) == ([], [], 1)


async def test_a_usage_limit_stops_the_run_unless_it_resets_within_max_wait() -> None:
    text = "You've hit your 5-hour limit · resets in 2h"
    limited = result(api_error="usage_limit_reached", result=text)
    beyond, *_ = await check([limited], max_wait=3600.0)
    assert beyond.startswith("error: agent 'cc' preflight failed: usage-limit")
    info = {"status": "rejected", "resetsAt": int(time.time()) + 600, "rateLimitType": "five_hour"}
    event = json.dumps({"type": "rate_limit_event", "rate_limit_info": info}).encode() + b"\n"
    soon = Play(code=1, output=[event, *limited.output])
    within, notices, slept, prompts, _ = await check([soon], max_wait=3600.0)
    assert (within, slept, prompts) == ("fake 1.0", [], 1)
    assert notices[0].endswith("; it resets within max_wait: the tasks wait for it")


async def test_the_whole_preflight_ends_within_its_limit() -> None:
    """A CLI that spends 90 s retrying on its own each time: a third try would end past LIMIT,
    so the check lets the failure through after the second backoff's try, within LIMIT."""
    outcome, notices, slept, prompts, took = await check([OVERLOADED], seconds=90.0)
    assert outcome == "fake 1.0"
    assert (slept, prompts) == ([5.0, 10.0], 3)
    assert took <= preflight.LIMIT
    assert notices[-1].endswith("; going on after 3 tries (the tasks retry by their policy)")
