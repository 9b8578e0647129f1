"""One task run with its collaborators and nothing else: a scripted executor, the run state,
the gate, a fake clock. No runner, no process, no git."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import anyio
import pytest
import tomli_w

from supervisor.engine import events
from supervisor.engine.gate import LaunchGate, Stop
from supervisor.engine.runstate import RunState
from supervisor.engine.taskrun import RunContext, TaskRun
from supervisor.state.layout import Layout
from supervisor.state.records import RunRecord, TaskRecord
from supervisor.state.store import Store
from supervisor.ui.compose import KINDS, load_plan
from tests.fakes import FakeClock, FakeExecutor, Play

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Lab:
    """A plan with tasks ``ids`` (own workspaces, no git), its run state and a task run per task.

    ``settings`` go over the defaults (demo agent, one retry after 1 s); ``depends`` maps a task
    to the tasks it depends on."""

    def __init__(
        self,
        tmp_path: Path,
        ids: list[str],
        settings: dict[str, Any] | None = None,
        depends: dict[str, list[str]] | None = None,
    ) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        defaults = {"agent": "demo", "retries": 1, "retry_delay": "1s", **(settings or {})}
        tasks = [{"id": t, "prompt": f"do {t}", "depends_on": (depends or {}).get(t, [])} for t in ids]
        table = {"agents": {"cc": {"command": ["cc"], "kind": "claude", "preflight": False}}}
        table |= {"defaults": defaults, "waves": [{"tasks": tasks}]}
        (tmp_path / "plan.toml").write_text(tomli_w.dumps(table))
        self.plan = load_plan(tmp_path / "plan.toml")
        self.store = Store(tmp_path / "state.db")
        run = RunRecord("r1", self.plan.key, self.plan.name, str(self.plan.path), started_at=1.0)
        records = [
            TaskRecord(
                "r1", t.id, t.wave, t.wave_name, branch=f"pagent/p/{t.id}", worktree=str(tmp_path / t.id)
            )
            for t in self.plan.tasks
        ]
        self.state = RunState.create(self.store, run, records)
        self.context = RunContext(self.plan, Layout.of(self.plan), tmp_path, "f" * 40)
        self.clock = FakeClock()
        self.events: list[events.Event] = []
        self.stop = Stop()

    def gate(self, executor: FakeExecutor, max_cost: float | None = None) -> LaunchGate:
        return LaunchGate(
            1, executor, self.clock, self.events.append, max_cost=max_cost, spent=lambda: self.state.spent
        )

    async def run(self, task_id: str, executor: FakeExecutor, gate: LaunchGate | None = None) -> None:
        task = self.plan.task(task_id)
        kind = KINDS[self.plan.agents[task.settings.agent].kind]
        await TaskRun(
            task,
            context=self.context,
            state=self.state,
            gate=gate or self.gate(executor),
            executor=executor,
            kind=kind,
            clock=self.clock,
            stop=self.stop,
            emit=self.events.append,
            rng=random.Random(1),
        ).run()

    def outcome(self, task_id: str) -> tuple[str, int, str | None]:
        record = self.state[task_id]
        return record.state.value, record.attempts, record.reason


async def test_a_failed_attempt_is_retried_and_each_end_is_recorded_with_its_task(tmp_path: Path) -> None:
    """exit 3, then success: two attempts, the first recorded ended before the retry waited."""
    lab = Lab(tmp_path, ["t"])
    executor = FakeExecutor({"t": [Play(code=3), Play(code=0)]})
    await lab.run("t", executor)
    assert lab.outcome("t") == ("succeeded", 2, "ok")
    assert [(a.reason, a.ended_at is not None) for a in lab.store.attempts(lab.state.run_id, "t")] == [
        ("exit 3", True),
        ("ok", True),
    ]
    assert [e.reason for e in lab.events if isinstance(e, events.AttemptFailed)] == ["exit 3"]
    assert any(1.0 <= s <= 1.25 for s in lab.clock.slept)


async def test_the_workspace_is_prepared_once_on_the_task_branch(tmp_path: Path) -> None:
    """The executor is asked for the task's branch at the run's base, once for all attempts."""
    lab = Lab(tmp_path, ["t"])
    executor = FakeExecutor({"t": [Play(code=1), Play(code=0)]})
    await lab.run("t", executor)
    (request,) = executor.prepared
    assert (request.branch, request.start) == (lab.state["t"].branch, "f" * 40)
    assert lab.state["t"].start_commit == "f" * 40


async def test_a_missing_done_marker_fails_the_attempt(tmp_path: Path) -> None:
    """done_marker set, the agent succeeded, the marker is not there: no-done-marker."""
    lab = Lab(tmp_path, ["t"], {"retries": 0, "done_marker": ".done"})
    await lab.run("t", FakeExecutor({"t": [Play(marker=False)]}))
    assert lab.outcome("t") == ("failed", 1, "no-done-marker")
    lab_ok = Lab(tmp_path / "ok", ["t"], {"retries": 0, "done_marker": ".done"})
    await lab_ok.run("t", FakeExecutor({"t": [Play(marker=True)]}))
    assert lab_ok.outcome("t") == ("succeeded", 1, "ok")


async def test_verify_runs_only_after_success_and_fails_with_reason_verify(tmp_path: Path) -> None:
    """verify exits 1, then 0: the first attempt fails with 'verify', the retry succeeds; the
    failed agent attempt of another task runs no verify at all."""
    lab = Lab(tmp_path, ["t", "broken"], {"verify": ["check"]})
    executor = FakeExecutor({"broken": [Play(code=2)]}, verify={"t": [1, 0]})
    await lab.run("t", executor)
    await lab.run("broken", executor)
    assert lab.outcome("t") == ("succeeded", 2, "ok")
    assert [a.reason for a in lab.store.attempts(lab.state.run_id, "t")] == ["verify", "ok"]
    assert [e for e in executor.log if e[0] == "verify"] == [("verify", "t", 1), ("verify", "t", 2)]
    assert lab.outcome("broken") == ("failed", 2, "exit 2")
    detail = json.loads(lab.store.attempts(lab.state.run_id, "t")[0].detail or "{}")
    assert detail["verify_exit"] == 1


async def test_a_dependency_that_failed_means_not_run(tmp_path: Path) -> None:
    """A task whose dependency failed never starts, and says which and why."""
    lab = Lab(tmp_path, ["a", "b"], {"retries": 0}, depends={"b": ["a"]})
    executor = FakeExecutor({"a": [Play(code=1)]})
    async with anyio.create_task_group() as tg:
        tg.start_soon(lab.run, "b", executor)
        tg.start_soon(lab.run, "a", executor)
    assert lab.outcome("a") == ("failed", 1, "exit 1")
    assert lab.outcome("b") == ("not_run", 0, "dependency a failed")
    assert [t for kind, t, _ in executor.log if kind == "start"] == ["a"]


async def test_auth_failure_stops_the_kind_and_notes_it_on_the_run(tmp_path: Path) -> None:
    """An auth failure is not retried; the gate starts no further task of that kind."""
    lab = Lab(tmp_path, ["t", "u"], {"agent": "cc", "retries": 3})
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "api_error_status": 401,
        "result": "bad key",
    }
    play = Play(code=1, output=[json.dumps(result).encode() + b"\n"])
    executor = FakeExecutor({"t": [play], "u": [play]})
    gate = lab.gate(executor)
    await lab.run("t", executor, gate)
    await lab.run("u", executor, gate)
    assert lab.outcome("t") == ("failed", 1, "auth")
    assert lab.outcome("u") == ("not_run", 0, "auth")
    assert gate.stopped_kinds == {"claude": "auth"}
    assert "claude agents stopped: auth (bad key)" in (lab.state.run.note or "")


async def test_max_cost_reached_starts_nothing(tmp_path: Path) -> None:
    """With the run's spend at max_cost_usd, a task does not start: not_run, max-cost."""
    lab = Lab(tmp_path, ["t"])
    lab.state.spent = 5.0
    executor = FakeExecutor({})
    await lab.run("t", executor, lab.gate(executor, max_cost=5.0))
    assert lab.outcome("t") == ("not_run", 0, "max-cost")
    assert executor.log == []


async def test_a_stop_while_waiting_to_retry_ends_the_task_interrupted(tmp_path: Path) -> None:
    """A stop during the backoff: nothing runs, the task is interrupted (it had an attempt)."""
    lab = Lab(tmp_path, ["t"], {"retry_delay": "10m"})

    class StoppingClock(FakeClock):
        async def sleep(self, seconds: float) -> None:
            if seconds >= 600:
                lab.stop.request()
            await super().sleep(seconds)

    lab.clock = StoppingClock()
    await lab.run("t", FakeExecutor({"t": [Play(code=1)]}))
    assert lab.outcome("t") == ("interrupted", 1, "interrupted")
