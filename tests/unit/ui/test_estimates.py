"""The estimates a person sees: the live view's ETA of the wave and the run, the wave's start
line, and ``--dry-run``'s tasks in start order with their expected durations."""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest
import tomli_w
from rich.console import Console

from supervisor.engine import events
from supervisor.engine.runner import Runner
from supervisor.engine.runs import new_run
from supervisor.engine.taskrun import RunContext
from supervisor.state.layout import Layout
from supervisor.state.store import Store
from supervisor.ui import progress
from supervisor.ui.compose import KINDS, load_plan
from supervisor.ui.console import EventPrinter
from supervisor.ui.describe import describe_plan
from supervisor.workspace.git import RepoInfo
from tests.timed_fakes import TimedExecutor, VirtualClock

SCHEDULE = events.Schedule(
    2,
    "longest-first",
    (
        events.WavePlan(
            0,
            "w1",
            tuple(events.Planned(t, s) for t, s in [("e", 40.0), ("a", 10.0), ("b", 10.0), ("c", 10.0)]),
        ),
        events.WavePlan(1, "w2", (events.Planned("f", 30.0), events.Planned("g", None))),
    ),
)


def shown(view: progress.ProgressView) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=200).print(view)
    return buffer.getvalue()


def test_the_live_view_counts_down_the_wave_and_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """e (40 s) and a (10 s) run on the two slots, b and c wait: the wave needs 40 s, then wave
    two's known 30 s (g has no history: the run's ETA is a lower bound). 25 s later, with a done
    and b running for 5 s: e has 15 s left, b 5, c 10 after b: 15 s, and the run 45 s."""
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    view = progress.ProgressView()
    view(events.RunStarted("r", "p", Path("/r"), 6, False))
    view(SCHEDULE)
    view(events.WaveStarted(0, "w1", 4, 40.0, 0))
    view(events.AttemptStarted("e", 1, None, Path("/w")))
    view(events.AttemptStarted("a", 1, None, Path("/w")))
    text = shown(view)
    assert "wave ETA 40s, run ETA at least 1m10s (1 without history)" in text
    assert "40s" in text.split("e ", 1)[1].splitlines()[0]  # e's row shows what it is expected to take
    clock[0] += 20
    view(events.TaskFinished("a", "succeeded", 1, None, 10.0))
    view(events.AttemptStarted("b", 1, None, Path("/w")))
    clock[0] += 5
    assert "wave ETA 15s, run ETA at least 45s (1 without history)" in shown(view)


def test_the_live_view_without_history_says_so() -> None:
    view = progress.ProgressView()
    view(events.Schedule(2, "longest-first", (events.WavePlan(0, "w", (events.Planned("x", None),)),)))
    view(events.WaveStarted(0, "w", 1))
    assert "wave ETA unknown (1 without history)" in shown(view)


def test_the_wave_line_carries_its_expected_duration(capsys: pytest.CaptureFixture[str]) -> None:
    from supervisor.ui.console import configure_logging

    configure_logging("json")
    printer = EventPrinter()
    printer(events.WaveStarted(0, "w1", 4, 40.0, 0))
    printer(events.WaveStarted(1, "w2", 2, 30.0, 1))
    printer(events.WaveStarted(2, "w3", 2))
    lines = capsys.readouterr().err.splitlines()
    assert '"expected": "40s"' in lines[0]
    assert '"expected": ">=30s"' in lines[1]
    assert '"without_history": 1' in lines[1]
    assert "expected" not in lines[2]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_dry_run_lists_the_start_order_with_the_estimates(tmp_path: Path) -> None:
    """After one run, --dry-run lists the long task first, each with its median, and the wave's
    and the run's expected durations; before any run it says there is no history."""
    table = {
        "jobs": 2,
        "defaults": {"agent": "demo", "isolation": "none", "retries": 0, "stall_timeout": "1h"},
        "waves": [{"name": "w1", "tasks": [{"id": t, "prompt": "x"} for t in ["a", "b", "c", "e"]]}],
    }
    (tmp_path / "plan.toml").write_text(tomli_w.dumps(table))
    plan = load_plan(tmp_path / "plan.toml")
    before = describe_plan(plan)
    assert "  a: agent demo, retries 0, timeout 2700s, isolation none, expected no history" in before
    assert "wave 1 'w1': expected unknown (4 without history)" in before
    assert not Layout.of(plan).database.exists()  # describing created nothing

    Layout.of(plan).ensure()
    store = Store(Layout.of(plan).database)
    clock = VirtualClock(busy=lambda: store.writes_in_flight > 0)
    executor = TimedExecutor(clock, {"a": 10.0, "b": 10.0, "c": 10.0, "e": 40.0})
    repo = RepoInfo(root=tmp_path, base_ref="HEAD", base_commit="0" * 40)
    state = new_run(plan, store, repo, clock.time())
    runner = Runner(
        RunContext(plan, Layout.of(plan), tmp_path, "0" * 40),
        state,
        executor,
        KINDS,
        clock=clock,
        rng=random.Random(1),
    )
    async with clock.running():
        await runner.execute()
    store.close()
    after = describe_plan(plan).splitlines()
    assert after[0] == "plan plan: 4 tasks in 1 waves, jobs = 2, order = longest-first"
    assert after[1] == "wave 1 'w1': expected 40s"
    assert [line.split(":")[0].strip() for line in after[2:6]] == ["e", "a", "b", "c"]
    assert after[2].endswith("expected 40s")
    assert after[-1] == "expected for the whole run: 40s"


def test_dry_run_still_names_clones_and_the_sandbox(tmp_path: Path) -> None:
    """What the dry run said of a task's workspace and sandbox before it had estimates stays."""
    table = {
        "defaults": {"agent": "demo", "workspace": "clone", "sandbox": "auto", "sandbox_network": False},
        "waves": [{"tasks": [{"id": "a", "prompt": "x"}]}],
    }
    (tmp_path / "plan.toml").write_text(tomli_w.dumps(table))
    text = describe_plan(load_plan(tmp_path / "plan.toml"))
    assert (
        "  a: agent demo, retries 2, timeout 2700s, isolation worktree, in a clone, sandbox auto (no network)"
        in text
    )
