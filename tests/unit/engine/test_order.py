"""Longest expected task first, with a scripted executor on a virtual clock: start orders and
makespans are exact, in virtual seconds; the estimates come from the plan's earlier runs."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import tomli_w

from supervisor.engine import events, order
from supervisor.engine.runner import Runner
from supervisor.engine.runs import new_run
from supervisor.engine.taskrun import RunContext
from supervisor.plan.model import Plan
from supervisor.state.layout import Layout
from supervisor.state.records import RunStatus
from supervisor.state.store import Store
from supervisor.ui.compose import load_plan
from supervisor.workspace.git import RepoInfo
from tests.fakes import Play
from tests.timed_fakes import TimedExecutor, VirtualClock

pytestmark = pytest.mark.anyio

# A short task listed first and a long one listed last: the case longest-first is for.
SECONDS = {"a": 10.0, "b": 10.0, "c": 10.0, "d": 10.0, "e": 40.0}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_plan(
    tmp_path: Path,
    tasks: list[dict[str, object]],
    *,
    jobs: int = 2,
    top: dict[str, object] | None = None,
    defaults: dict[str, object] | None = None,
) -> Plan:
    table: dict[str, object] = {"jobs": jobs, **(top or {})}
    table["defaults"] = {
        "agent": "demo",
        "isolation": "none",
        "retries": 0,
        "stall_timeout": "1h",
        **(defaults or {}),
    }
    table["waves"] = [{"name": "w1", "tasks": [{"prompt": "x", **t} for t in tasks]}]
    (tmp_path / "plan.toml").write_text(tomli_w.dumps(table))
    return load_plan(tmp_path / "plan.toml")


class Nights:
    """Runs of one plan on one store, each on a fresh virtual clock and timed executor."""

    def __init__(self, tmp_path: Path, plan: Plan, seconds: dict[str, float]) -> None:
        self.plan = plan
        self.store = Store(tmp_path / "state.db")
        self.repo = RepoInfo(root=tmp_path, base_ref="HEAD", base_commit="0" * 40)
        self.seconds = seconds
        self.clock = VirtualClock(busy=self.writing)
        self.executor = TimedExecutor(self.clock, seconds)
        self.events: list[events.Event] = []

    async def run(self, plays: dict[str, list[Play]] | None = None) -> RunStatus:
        self.clock = VirtualClock(self.clock.now + 86400, busy=self.writing)  # the next night
        self.executor = TimedExecutor(self.clock, self.seconds, plays=plays)
        self.events = []
        state = new_run(self.plan, self.store, self.repo, self.clock.time())
        context = RunContext(self.plan, Layout.of(self.plan), self.repo.root, self.repo.base_commit)
        from supervisor.ui.compose import KINDS

        runner = Runner(
            context,
            state,
            self.executor,
            KINDS,
            clock=self.clock,
            emit=self.events.append,
            rng=random.Random(5),
        )
        async with self.clock.running():
            return await runner.execute()

    def writing(self) -> bool:
        return self.store.writes_in_flight > 0

    @property
    def makespan(self) -> float:
        first = min(s.at for s in self.executor.starts)
        return max(e.at for e in self.executor.ends) - first

    def first(self, kind: type[events.Event]) -> events.Event:
        return next(e for e in self.events if isinstance(e, kind))


async def test_the_second_night_starts_the_longest_task_first_and_meets_the_bound(tmp_path: Path) -> None:
    """Night one knows nothing: plan order, so the long task listed last stretches the wave to
    20 + 40 s. Night two starts it first and ends at the lower bound, max(40, 80 / 2) = 40 s."""
    plan = write_plan(tmp_path, [{"id": t} for t in SECONDS])
    nights = Nights(tmp_path, plan, SECONDS)
    assert await nights.run() is RunStatus.SUCCEEDED
    assert list(nights.executor.started()) == ["a", "b", "c", "d", "e"]
    assert nights.makespan == pytest.approx(60.0)
    assert await nights.run() is RunStatus.SUCCEEDED
    assert next(iter(nights.executor.started())) == "e"
    assert nights.makespan == pytest.approx(40.0)
    assert nights.executor.max_running == 2


async def test_the_schedule_and_the_wave_carry_the_estimates(tmp_path: Path) -> None:
    """The Schedule event lists the wave's tasks in start order with their medians; the wave's
    start says how long it should take (the forecast of the same list scheduling)."""
    plan = write_plan(tmp_path, [{"id": t} for t in SECONDS])
    nights = Nights(tmp_path, plan, SECONDS)
    await nights.run()
    first = nights.first(events.Schedule)
    assert isinstance(first, events.Schedule)
    assert all(p.expected is None for p in first.waves[0].tasks)
    started = nights.first(events.WaveStarted)
    assert isinstance(started, events.WaveStarted)
    assert (started.expected, started.unknown) == (None, 5)
    await nights.run()
    schedule = nights.first(events.Schedule)
    assert isinstance(schedule, events.Schedule)
    (wave,) = schedule.waves
    assert [(p.task_id, p.expected) for p in wave.tasks] == [
        ("e", pytest.approx(40.0)),
        ("a", pytest.approx(10.0)),
        ("b", pytest.approx(10.0)),
        ("c", pytest.approx(10.0)),
        ("d", pytest.approx(10.0)),
    ]
    started = nights.first(events.WaveStarted)
    assert isinstance(started, events.WaveStarted)
    assert (started.expected, started.unknown) == (pytest.approx(40.0), 0)


async def test_the_expected_duration_is_the_median_of_successful_attempts(tmp_path: Path) -> None:
    """Three nights: 'e' took 40, 40 and 100 s (median 40); 'f' took 1, 1 and 500 s, and on the
    third night a failed attempt of 500 s came first, which does not count: median 1, not 250.5."""
    plan = write_plan(tmp_path, [{"id": "e"}, {"id": "f"}], defaults={"retries": 1})
    nights = Nights(tmp_path, plan, {"e": 40.0, "f": 1.0})
    await nights.run()
    await nights.run()
    nights.seconds = {"e": 100.0, "f": 500.0}
    await nights.run(plays={"f": [Play(code=1), Play(code=0)]})
    expected = order.expected_durations(nights.store.success_durations(plan.key))
    assert expected["e"] == pytest.approx(40.0)
    assert expected["f"] == pytest.approx(1.0)


async def test_a_task_without_history_goes_first(tmp_path: Path) -> None:
    """A task new in the plan has no estimate: it may be long, so it starts before the known ones."""
    plan = write_plan(tmp_path, [{"id": t} for t in SECONDS])
    nights = Nights(tmp_path, plan, SECONDS)
    await nights.run()
    nights.plan = write_plan(tmp_path, [*({"id": t} for t in SECONDS), {"id": "new"}])
    await nights.run()
    assert list(nights.executor.started())[:2] == ["new", "e"]


async def test_order_plan_keeps_the_plan_order(tmp_path: Path) -> None:
    """``order = "plan"``: first come, first served in plan order, history or not."""
    plan = write_plan(tmp_path, [{"id": t} for t in SECONDS], top={"order": "plan"})
    nights = Nights(tmp_path, plan, SECONDS)
    await nights.run()
    await nights.run()
    assert list(nights.executor.started()) == ["a", "b", "c", "d", "e"]
    assert nights.makespan == pytest.approx(60.0)


async def test_a_dependency_goes_first_by_the_chain_it_starts(tmp_path: Path) -> None:
    """x (5 s) gates y (60 s) in the same wave; z is 30 s. By their own durations z would start
    before x (y cannot start yet); the chain x -> y (65 s) is the longest, so x starts first. y
    starts only after x has ended, and competes for a slot from then on (here z took it)."""
    seconds = {"z": 30.0, "x": 5.0, "y": 60.0}
    plan = write_plan(tmp_path, [{"id": "z"}, {"id": "x"}, {"id": "y", "depends_on": ["x"]}], jobs=1)
    nights = Nights(tmp_path, plan, seconds)
    await nights.run()
    assert list(nights.executor.started()) == ["z", "x", "y"]
    await nights.run()
    assert list(nights.executor.started()) == ["x", "z", "y"]
    starts = {s.task_id: s.at for s in nights.executor.starts}
    ends = {e.task_id: e.at for e in nights.executor.ends}
    assert starts["y"] >= ends["x"]


async def test_a_retry_keeps_its_rank(tmp_path: Path) -> None:
    """The long task fails (exit 1 after its 40 s) and waits its retry_delay (5-6.25 s) while 'a'
    runs; when 'a' ends, the retry gets the slot before the short tasks that waited longer."""
    plan = write_plan(
        tmp_path, [{"id": t} for t in SECONDS], defaults={"retries": 1, "retry_delay": "5s"}, jobs=1
    )
    nights = Nights(tmp_path, plan, SECONDS)
    await nights.run()
    await nights.run(plays={"e": [Play(code=1), Play(code=0)]})
    assert list(nights.executor.started()) == ["e", "a", "e", "b", "c", "d"]


def test_forecast_is_list_scheduling_in_the_given_order() -> None:
    """Busy slots first, then each task on the slot that frees first, after what it waits for."""
    planned = [
        events.Planned("long", 40.0),
        events.Planned("s1", 10.0),
        events.Planned("s2", 10.0),
        events.Planned("after", 5.0, ("s1",)),
        events.Planned("unknown", None),
    ]
    assert order.forecast(2, planned) == order.Forecast(40.0, 1)
    assert order.forecast(2, planned, busy=[30.0]) == order.Forecast(50.0, 1)
    assert order.forecast(1, planned[:2]) == order.Forecast(50.0)
    assert order.forecast(3, [events.Planned("a", 1.0), events.Planned("b", 2.0, ("a",))]).seconds == 3.0
    assert order.forecast(4, []) == order.Forecast(0.0)


def test_start_order_sorts_by_chain_then_plan_order(tmp_path: Path) -> None:
    """Unknown first (plan order among them), then the longest chain; 'plan' keeps the list."""
    plan = write_plan(tmp_path, [{"id": t} for t in ["p", "q", "r", "s", "t"]])
    tasks = plan.waves[0].tasks
    expected = {"p": 1.0, "q": 9.0, "s": 9.0, "t": 3.0}
    assert [t.id for t in order.start_order(tasks, expected, "longest-first")] == ["r", "q", "s", "t", "p"]
    assert [t.id for t in order.start_order(tasks, expected, "plan")] == ["p", "q", "r", "s", "t"]
