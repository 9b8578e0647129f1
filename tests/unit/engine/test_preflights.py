"""The preflights of a run's agents run side by side, and the first failure stops the others.

``execute_plan`` as the CLI calls it, with the scripted executor and a kind whose preflight
meets the other agents' preflights at a barrier: run one after the other they never all arrive
(and the test fails at its bound); side by side they do.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import anyio
import pytest

from supervisor.agents.base import Kinds, Notice
from supervisor.agents.plain import PlainKind
from supervisor.agents.preflight import PreflightError
from supervisor.engine.invocation import execute_plan
from supervisor.plan import load
from supervisor.plan.model import AgentSpec
from supervisor.seam import AttemptKey, Executor
from tests.fakes import FakeExecutor

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class MeetingKind(PlainKind):
    """A kind whose preflight waits until ``expected`` preflights are under way at once."""

    name = "meeting"
    default_preflight = True

    def __init__(self, expected: int, fail: Sequence[str] = ()) -> None:
        self.expected = expected
        self.fail = set(fail)
        self.arrived: list[str] = []
        self.cancelled: list[str] = []
        self.everyone = anyio.Event()

    async def preflight(
        self, agent: AgentSpec, executor: Executor, key: AttemptKey, *, max_wait: float, notice: Notice
    ) -> str:
        self.arrived.append(agent.name)
        if agent.name in self.fail:
            raise PreflightError(f"agent {agent.name!r} preflight failed: auth")
        if len(self.arrived) == self.expected:
            self.everyone.set()
        try:
            with anyio.fail_after(5):
                await self.everyone.wait()
        except anyio.get_cancelled_exc_class():
            self.cancelled.append(agent.name)
            raise
        return f"{agent.name} 1.0"


def plan_with(tmp_path: Path, repo: Path, kind: MeetingKind, agents: Sequence[str]) -> Kinds:
    lines = [f'repo = "{repo}"', "[defaults]", 'isolation = "none"']
    for name in agents:
        lines += [f"[agents.{name}]", f'command = ["{name}"]', 'kind = "meeting"']
    lines += ["[[waves]]"]
    for name in agents:
        lines += ["[[waves.tasks]]", f'id = "t-{name}"', f'agent = "{name}"', 'prompt = "p"']
    (tmp_path / "plan.toml").write_text("\n".join(lines) + "\n")
    return Kinds([kind])


async def test_preflights_run_side_by_side(tmp_path: Path, repo: Path) -> None:
    kind = MeetingKind(expected=3)
    kinds = plan_with(tmp_path, repo, kind, ["a", "b", "c"])
    plan = load.load_plan(tmp_path / "plan.toml", kinds.catalog())
    result = await execute_plan(plan, executor=FakeExecutor({}), kinds=kinds)
    assert result.exit_code == 0
    assert sorted(kind.arrived) == ["a", "b", "c"]
    assert result.view["agent_version"] == "a: a 1.0; b: b 1.0; c: c 1.0"


async def test_the_first_failure_stops_the_other_preflights(tmp_path: Path, repo: Path) -> None:
    kind = MeetingKind(expected=3, fail=["c"])
    kinds = plan_with(tmp_path, repo, kind, ["a", "b", "c"])
    plan = load.load_plan(tmp_path / "plan.toml", kinds.catalog())
    executor = FakeExecutor({})
    started = time.monotonic()
    with pytest.raises(PreflightError, match="agent 'c' preflight failed: auth"):
        await execute_plan(plan, executor=executor, kinds=kinds)
    assert time.monotonic() - started < 2  # not the waiting ones' five seconds
    assert sorted(kind.cancelled) == ["a", "b"]
    assert executor.prepared == []  # nothing was created
