"""One rate-limit gate per agent (or account), with a scripted Claude-kind executor on a virtual
clock: a 429 storm closes the gate for the policy's delay, one attempt probes, only its success
reopens it. Times are exact virtual seconds; the jitter comes from a seeded random generator."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
import tomli_w

from supervisor.engine import events
from supervisor.engine.gate import LaunchGate
from supervisor.engine.runner import Runner
from supervisor.engine.runs import new_run
from supervisor.engine.taskrun import RunContext
from supervisor.plan.model import Plan
from supervisor.seam import AttemptSpec
from supervisor.state.layout import Layout
from supervisor.state.records import RunStatus
from supervisor.state.store import Store
from supervisor.ui.compose import KINDS, load_plan
from supervisor.workspace.git import RepoInfo
from tests.fakes import FakeExecutor, Play
from tests.timed_fakes import Timed, TimedExecutor, TimedPlay, VirtualClock

pytestmark = pytest.mark.anyio

DELAY = 60.0  # rate_limit_delay


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def result(**fields: Any) -> bytes:
    line = {"type": "result", "subtype": "success", "is_error": False, "result": "done"}
    line |= {"session_id": "s", "num_turns": 1, "total_cost_usd": 0, **fields}
    return json.dumps(line).encode() + b"\n"


LIMITED = TimedPlay(
    code=1, output=[result(is_error=True, api_error_status=429, result="API Error: 429")], seconds=1
)
ERROR = TimedPlay(
    code=1, output=[result(is_error=True, api_error_status=500, result="API Error: 500")], seconds=1
)
OK = TimedPlay(code=0, output=[result()], seconds=10)


def storm(until: float, *, during: Play = LIMITED, after: Play = OK) -> Callable[[AttemptSpec, float], Play]:
    """A scripted API: ``during`` for attempts that start before ``until``, then ``after``."""
    return lambda spec, now: during if now < until else after


def write_plan(
    tmp_path: Path,
    tasks: list[dict[str, Any]],
    *,
    jobs: int,
    agents: dict[str, dict[str, Any]] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Plan:
    agents = agents or {"cc": {}}
    table: dict[str, Any] = {
        "jobs": jobs,
        "agents": {
            name: {"command": [f"cc-{name}"], "kind": "claude", "preflight": False, **extra}
            for name, extra in agents.items()
        },
        "defaults": {
            "agent": next(iter(agents)),
            "isolation": "none",
            "retries": 0,
            "stall_timeout": "1h",
            "rate_limit_delay": f"{DELAY:g}s",
            **(defaults or {}),
        },
        "waves": [{"tasks": [{"prompt": "x", **task} for task in tasks]}],
    }
    (tmp_path / "plan.toml").write_text(tomli_w.dumps(table))
    return load_plan(tmp_path / "plan.toml")


class Night:
    """One run of a plan with a timed executor on a virtual clock."""

    def __init__(self, tmp_path: Path, plan: Plan, play: Callable[[AttemptSpec, float], Play]) -> None:
        self.plan = plan
        self.store = Store(tmp_path / "state.db")
        self.clock = VirtualClock(busy=lambda: self.store.writes_in_flight > 0)
        self.t0 = self.clock.now
        self.executor = TimedExecutor(self.clock, {}, play=lambda spec, now: play(spec, now - self.t0))
        repo = RepoInfo(root=tmp_path, base_ref="HEAD", base_commit="0" * 40)
        state = new_run(plan, self.store, repo, self.clock.time())
        context = RunContext(plan, Layout.of(plan), repo.root, repo.base_commit)
        self.events: list[events.Event] = []
        self.runner = Runner(
            context,
            state,
            self.executor,
            KINDS,
            clock=self.clock,
            emit=self.events.append,
            rng=random.Random(5),
        )

    async def run(self, during: Callable[[], Any] | None = None) -> RunStatus:
        async with self.clock.running(), anyio.create_task_group() as tg:
            if during is not None:
                tg.start_soon(during)
            return await self.runner.execute()

    def starts(self) -> list[Timed]:
        return [Timed(s.at - self.t0, s.task_id, s.attempt) for s in self.executor.starts]

    def ends(self) -> list[Timed]:
        return [Timed(e.at - self.t0, e.task_id, e.attempt) for e in self.executor.ends]

    def states(self) -> dict[str, tuple[str, int]]:
        records = self.store.tasks(self.runner.state.run_id)
        return {r.task_id: (r.state.value, r.attempts) for r in records}

    def notices(self) -> list[str]:
        return [e.message for e in self.events if isinstance(e, events.Notice)]

    def most_running(self, start: float, end: float) -> int:
        """The most attempts running at once between ``start`` and ``end`` (relative times)."""
        spans = list(zip(self.starts(), self.ends_of(), strict=True))
        points = sorted({s.at for s, _ in spans} | {start})
        return max(
            (sum(s.at <= at < e.at for s, e in spans) for at in points if start <= at < end), default=0
        )

    def ends_of(self) -> list[Timed]:
        """The end of each start, in the order of ``starts``."""
        ends = {(e.task_id, e.attempt): e for e in self.ends()}
        return [ends[(s.task_id, s.attempt)] for s in self.starts()]


async def test_a_storm_costs_one_probe_per_delay_and_the_first_success_reopens(tmp_path: Path) -> None:
    """Six tasks, jobs = 3, every attempt started in the first 200 s gets a 429. The first three
    fail at once; then nothing starts but one probe per closure, each after the doubled delay
    (60-75 s, 120-150 s, ...), alone; the probe after the storm succeeds and the rest start at
    once, three at a time."""
    plan = write_plan(tmp_path, [{"id": f"t{n}"} for n in range(1, 7)], jobs=3)
    night = Night(tmp_path, plan, storm(200))
    assert await night.run() is RunStatus.SUCCEEDED
    starts = night.starts()
    assert [s.at for s in starts[:3]] == [0, 0, 0]
    success = next(s for s in starts if s.at >= 200)
    probes = [s for s in starts[3:] if s.at <= success.at]
    assert probes[-1] == success
    assert len(probes) >= 2  # at least one probe during the storm
    gaps = [b.at - a.at for a, b in zip([starts[2], *probes], probes, strict=False)]
    for k, gap in enumerate(gaps):  # each probe waited its closure's delay (plus 1 s of the 429)
        assert DELAY * 2**k <= gap - 1 <= DELAY * 2**k * 1.25, gaps
    assert night.most_running(1, success.at + 10) == 1
    after = [s for s in starts if s.at > success.at]
    assert [s.at for s in after] == [success.at + 10] * 3 + [success.at + 20] * (len(after) - 3)
    assert {state for state, _ in night.states().values()} == {"succeeded"}
    assert len(starts) == 3 + len(probes) + len(after)
    assert sum("is rate-limited" in n for n in night.notices()) == len(probes)
    assert sum("the probe succeeded" in n for n in night.notices()) == 1


async def test_running_attempts_are_not_stopped(tmp_path: Path) -> None:
    """A long attempt running when the gate closes goes on to its end; it changes nothing."""
    plan = write_plan(tmp_path, [{"id": "long"}, {"id": "t1"}, {"id": "t2"}], jobs=2)

    def play(spec: AttemptSpec, now: float) -> Play:
        if spec.task_id == "long":
            return TimedPlay(code=0, output=[result()], seconds=300)
        return storm(100)(spec, now)

    night = Night(tmp_path, plan, play)
    assert await night.run() is RunStatus.SUCCEEDED
    assert night.states()["long"] == ("succeeded", 1)
    long_end = next(e for e in night.ends() if e.task_id == "long")
    assert long_end.at == 300
    t2 = [s.at for s in night.starts() if s.task_id == "t2"]
    assert t2[0] >= 1 + DELAY  # it waited for the gate t1's 429 closed, not for its slot


async def test_agents_of_one_account_share_a_gate_others_do_not(tmp_path: Path) -> None:
    """a1 and a2 name account "team"; b has its own gate. a1's 429 holds a2's task back until
    the delay has passed, while b's second task takes the free slot at once."""
    agents = {"a1": {"account": "team"}, "a2": {"account": "team"}, "b": {}}
    tasks = [
        {"id": "x1", "agent": "a1"},
        {"id": "y1", "agent": "b"},
        {"id": "x2", "agent": "a2"},
        {"id": "y2", "agent": "b"},
    ]
    plan = write_plan(tmp_path, tasks, jobs=2, agents=agents, defaults={"agent": "a1"})

    def play(spec: AttemptSpec, now: float) -> Play:
        if spec.argv[0] == "cc-b":
            return TimedPlay(code=0, output=[result()], seconds=50)
        return storm(30)(spec, now)

    night = Night(tmp_path, plan, play)
    assert await night.run() is RunStatus.SUCCEEDED
    first = {}
    for start in night.starts():
        first.setdefault(start.task_id, start.at)
    assert first["x1"] == first["y1"] == 0
    assert first["y2"] == 1  # b's gate is open: it takes the slot x1's 429 freed
    assert first["x2"] >= 1 + DELAY
    assert any("account team is rate-limited" in n for n in night.notices())


async def test_a_probe_that_fails_otherwise_hands_the_probe_on(tmp_path: Path) -> None:
    """The probe gets a 500 (not a rate limit): the gate stays closed, but the next waiting
    attempt probes at once; its success reopens the gate."""
    plan = write_plan(tmp_path, [{"id": f"t{n}"} for n in range(1, 5)], jobs=2, defaults={"retries": 1})
    after_storm: list[float] = []

    def play(spec: AttemptSpec, now: float) -> Play:
        if now < 50:
            return LIMITED
        after_storm.append(now)
        return ERROR if len(after_storm) == 1 else OK

    night = Night(tmp_path, plan, play)
    assert await night.run() is RunStatus.SUCCEEDED
    starts = night.starts()
    first_probe, second_probe = starts[2], starts[3]
    assert first_probe.at >= 1 + DELAY
    assert second_probe.at == first_probe.at + 1  # the 500 ended it: handed on at once
    assert all(s.at >= second_probe.at + 10 for s in starts[4:])


async def test_a_stop_while_the_gate_is_closed_ends_the_run_at_once(tmp_path: Path) -> None:
    """rate_limit_delay = 1h: a SIGTERM-like interrupt during the closure does not wait for it."""
    plan = write_plan(tmp_path, [{"id": "t1"}, {"id": "t2"}], jobs=1, defaults={"rate_limit_delay": "1h"})
    night = Night(tmp_path, plan, storm(10_000))

    async def interrupt_after_the_429() -> None:
        while not night.executor.ends:
            await night.clock.sleep(0.5)
        await night.clock.sleep(5)
        night.runner.interrupt()

    assert await night.run(interrupt_after_the_429) is RunStatus.INTERRUPTED
    assert night.clock.now - night.t0 < 60
    assert [s.task_id for s in night.starts()] == ["t1"]
    assert night.states() == {"t1": ("interrupted", 1), "t2": ("not_run", 0)}


async def test_a_usage_limit_closes_the_gate_until_its_reset(tmp_path: Path) -> None:
    """A usage limit resetting in 20 minutes: the agent's other task starts only after the reset
    (plus up to 75 s), instead of hitting the same limit at once."""
    plan = write_plan(tmp_path, [{"id": "u1"}, {"id": "u2"}], jobs=1)
    limited: list[bool] = []

    def play(spec: AttemptSpec, now: float) -> Play:
        if limited:
            return OK
        limited.append(True)
        info = {"status": "rejected", "resetsAt": int(night.t0 + now + 1200), "rateLimitType": "five_hour"}
        text = "You've hit your 5-hour limit"
        lines = [
            json.dumps({"type": "rate_limit_event", "rate_limit_info": info}).encode() + b"\n",
            result(is_error=True, result=text, api_error_status=429, api_error="usage_limit_reached"),
        ]
        return TimedPlay(code=1, output=lines, seconds=1)

    night = Night(tmp_path, plan, play)
    assert await night.run() is RunStatus.SUCCEEDED
    starts = night.starts()
    assert [s.task_id for s in starts] == ["u1", "u2", "u1"]
    assert 1200 <= starts[1].at <= 1200 + 75


async def test_slots_go_to_the_best_ranked_waiter() -> None:
    """With every slot taken, waiters get freed slots by rank, then first come first served."""
    gate = LaunchGate(1, FakeExecutor({}), VirtualClock(), lambda event: None, max_cost=None, spent=float)
    gate.rank({"low": 5, "high": 1, "mid": 3, "mid2": 3})
    got: list[str] = []

    async def take(task_id: str) -> None:
        async with gate.slot(task_id, "cc"):
            got.append(task_id)
            await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as tg, gate.slot("first", "cc"):
        for task_id in ["low", "mid", "high", "mid2"]:
            tg.start_soon(take, task_id)
        await anyio.wait_all_tasks_blocked()  # all four wait for the one slot
    assert got == ["high", "mid", "mid2", "low"]


async def test_a_retry_waits_for_the_gate_not_for_its_own_doubled_delay(tmp_path: Path) -> None:
    """T's 429 closes the gate (60-75 s); O, waiting first, probes and succeeds: open again. T's
    next 429 is the gate's first closure, though T's own second one: T retries when the gate
    lets it (after 60-75 s), not after the 120-150 s a timer of its own would have waited."""
    plan = write_plan(tmp_path, [{"id": "T"}, {"id": "O"}], jobs=1)
    plays = {"T": [LIMITED, LIMITED, OK], "O": [OK]}
    night = Night(tmp_path, plan, lambda spec, now: plays[spec.task_id][spec.attempt - 1])
    assert await night.run() is RunStatus.SUCCEEDED
    assert [(s.task_id, s.attempt) for s in night.starts()] == [("T", 1), ("O", 1), ("T", 2), ("T", 3)]
    second_end = next(e.at for e in night.ends() if (e.task_id, e.attempt) == ("T", 2))
    third_start = night.starts()[3].at
    assert DELAY <= third_start - second_end <= DELAY * 1.25


async def test_a_cancelled_waiter_gives_its_place_on() -> None:
    """A waiter cancelled while it waits is skipped: the freed slot goes to the next one (though
    the cancelled one ranked better), and afterwards the slot is free again."""
    from supervisor.engine.slots import Slots

    slots = Slots(1)
    await slots.acquire(0)
    got: list[str] = []
    scopes: dict[str, anyio.CancelScope] = {}

    async def take(name: str, rank: float) -> None:
        with anyio.CancelScope() as scope:
            scopes[name] = scope
            await slots.acquire(rank)
            got.append(name)
            slots.release()

    with anyio.fail_after(5):  # a slot lost to the cancelled waiter would leave "next" waiting
        async with anyio.create_task_group() as tg:
            tg.start_soon(take, "cancelled", 1)
            tg.start_soon(take, "next", 2)
            await anyio.wait_all_tasks_blocked()
            scopes["cancelled"].cancel()
            await anyio.wait_all_tasks_blocked()
            slots.release()
    assert got == ["next"]
    with anyio.fail_after(1):
        await slots.acquire(0)  # free again: no waiting
