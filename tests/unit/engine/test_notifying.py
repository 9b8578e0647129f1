"""The engine's side of the hand-off: which events notify, what the run records, the gate's stop.

The runner runs with the scripted executor and fake clock of ``test_runner`` (a Claude kind fed
result events of the recorded shape); the payloads are the real ones, recorded in a real SQLite
store. Only the transport is a stand-in (``Outbox``: it keeps what would be sent); apprise, real
servers and the bound are tested in ``tests/test_notify.py`` and ``tests/test_handoff_e2e.py``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from supervisor.engine import events
from supervisor.engine.gate import LaunchGate
from supervisor.engine.notifying import Notifier
from supervisor.engine.runner import Runner
from supervisor.engine.runs import new_run
from supervisor.engine.taskrun import RunContext
from supervisor.handoff.notify import TargetResult
from supervisor.handoff.payload import Notification
from supervisor.plan.model import NotifyConfig
from supervisor.state.layout import Layout
from supervisor.state.records import RunStatus
from supervisor.state.store import Store
from supervisor.state.views import run_view
from supervisor.ui.compose import KINDS
from supervisor.workspace.git import RepoInfo
from tests.fakes import FakeClock, FakeExecutor, Play
from tests.handoff_views import DENIED
from tests.unit.engine.test_runner import write_plan

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Outbox:
    """Stands in for the network: keeps each notification a target would get, answers ok."""

    def __init__(self) -> None:
        self.sent: list[Notification] = []

    async def __call__(self, config: NotifyConfig, note: Notification) -> list[TargetResult]:
        if not config.wants(note.event):
            return []
        self.sent.append(note)
        return [TargetResult("json://127.0.0.1:9/***", True, None, 1, 0.01)]

    def payloads(self) -> list[dict[str, Any]]:
        return [dict(note.payload) for note in self.sent]


def _result(**fields: Any) -> Play:
    """An attempt printing one Claude ``result`` event with ``fields`` over a plain success."""
    event = {"type": "result", "subtype": "success", "is_error": False, "result": "done"}
    event.update(session_id="s1", num_turns=1, total_cost_usd=0.01, **fields)
    return Play(code=0, output=[json.dumps(event).encode() + b"\n"])


async def test_needs_input_and_an_auth_stop_notify_while_the_run_goes_on(tmp_path: Path) -> None:
    """A task ending needs-input and an auth failure that stops the Claude agents each send a
    notification from the running run (the task-failed one is off by default); the run-finished
    one follows; every send is recorded on the run and emitted as a Notified event."""
    plan = write_plan(
        tmp_path,
        [["ask", "x", "y"]],
        extra=(
            '[notify]\nurls = ["json://127.0.0.1:9/hook"]\ntimeout = "10s"\n'
            '[agents.cc]\ncommand = ["claude-wrapper"]\nkind = "claude"\npreflight = false\n'
        ),
        defaults='retries = 0\nagent = "cc"',
        jobs=1,
    )
    auth = _result(is_error=True, api_error_status=401, result="Invalid API key · Please run /login")
    executor = FakeExecutor({"ask": [_result(permission_denials=[DENIED])], "x": [auth], "y": [_result()]})
    store = Store(tmp_path / "state.db")
    repo = RepoInfo(root=tmp_path, base_ref="HEAD", base_commit="0" * 40)
    clock = FakeClock()
    state = new_run(plan, store, repo, clock.time())
    seen: list[events.Event] = []
    outbox = Outbox()
    notifier = Notifier(plan.notify, state, seen.append, send=outbox)

    def emit(event: events.Event) -> None:
        seen.append(event)
        notifier.observe(event)

    context = RunContext(plan, Layout.of(plan), repo.root, repo.base_commit)
    runner = Runner(context, state, executor, KINDS, clock=clock, emit=emit, rng=random.Random(1))
    async with notifier.sending():
        assert await runner.execute() is RunStatus.FAILED
        await notifier.run_finished(state.view(), None)

    states = {r.task_id: (r.state.value, r.reason) for r in store.tasks(state.run_id)}
    assert states == {"ask": ("failed", "needs-input"), "x": ("failed", "auth"), "y": ("not_run", "auth")}
    got = {p["event"]: p for p in outbox.payloads()}
    assert sorted(got) == ["needs-input", "run-finished", "stopped-early"]
    assert got["needs-input"]["task"]["id"] == "ask"
    assert got["needs-input"]["task"]["permission_denials"] == [DENIED]
    assert got["needs-input"]["task"]["needs_person"] == ["denied Bash: rm -rf build"]
    assert got["stopped-early"]["stop"]["reason"] == "auth"
    assert "no further claude task was started" in got["stopped-early"]["stop"]["detail"]
    assert got["run-finished"]["run"]["counts"] == {"failed": 2, "not_run": 1}
    recorded = run_view(store, state.run)["notifications"]
    assert sorted(n["event"] for n in recorded) == ["needs-input", "run-finished", "stopped-early"]
    assert all(r["ok"] for n in recorded for r in n["results"])
    notified = [e for e in seen if isinstance(e, events.Notified)]
    assert sorted(e.event for e in notified) == ["needs-input", "run-finished", "stopped-early"]
    assert {e.target for e in notified} == {"json://127.0.0.1:9/***"}
    store.close()


async def test_without_targets_nothing_is_sent_or_recorded(tmp_path: Path) -> None:
    """No [notify] table: observing events sends nothing and records nothing."""
    plan = write_plan(tmp_path, [["a"]], defaults="retries = 0")
    store = Store(tmp_path / "state.db")
    repo = RepoInfo(root=tmp_path, base_ref="HEAD", base_commit="0" * 40)
    state = new_run(plan, store, repo, 1000.0)
    outbox = Outbox()
    notifier = Notifier(plan.notify, state, lambda event: None, send=outbox)
    async with notifier.sending():
        notifier.observe(events.TaskFinished("a", "failed", 1, "needs-input", None))
        assert await notifier.run_finished(state.view(), None) == []
    assert state.run.notifications is None
    assert outbox.sent == []
    store.close()


def test_max_cost_stops_early_once() -> None:
    """The gate holds tasks back once the spend reaches max_cost_usd and says so once: one
    Notice for people, one StoppedEarly for the notifier."""
    seen: list[events.Event] = []
    gate = LaunchGate(1, FakeExecutor({}), FakeClock(), seen.append, max_cost=1.0, spent=lambda: 1.5)
    assert gate.blocked("claude") == gate.blocked("plain") == "max-cost"
    stops = [e for e in seen if isinstance(e, events.StoppedEarly)]
    assert [(s.reason, s.message) for s in stops] == [
        ("max-cost", "max_cost_usd = 1 reached ($1.50 spent); no further task was started")
    ]
    assert [e.message for e in seen if isinstance(e, events.Notice)] == [stops[0].message]
