"""The scheduler with a scripted launcher and a fake clock: no process, no real sleep."""

from __future__ import annotations

import json
import random
from pathlib import Path

import anyio
import pytest

from supervisor.engine import events
from supervisor.engine.runner import Runner
from supervisor.engine.runs import new_run, reopen_run
from supervisor.engine.taskrun import RunContext
from supervisor.plan.model import Plan
from supervisor.state.layout import Layout
from supervisor.state.records import RunStatus
from supervisor.state.store import Store
from supervisor.state.views import find_run
from supervisor.ui.compose import KINDS, load_plan
from supervisor.workspace.git import RepoInfo
from tests.fakes import FakeClock, FakeExecutor, Play
from tests.timed_fakes import TimedExecutor, VirtualClock

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_plan(
    tmp_path: Path, waves: list[list[str]], extra: str = "", defaults: str = "", jobs: int = 2
) -> Plan:
    """A plan of agent-less tasks (isolation "none") with the given task ids per wave."""
    agent = "" if "agent" in defaults else 'agent = "demo"'
    lines = [f"jobs = {jobs}\n{extra}", "[defaults]", agent, 'isolation = "none"', defaults]
    for w, ids in enumerate(waves):
        lines += ["[[waves]]", f'name = "w{w + 1}"']
        for task_id in ids:
            lines += ["[[waves.tasks]]", f'id = "{task_id}"', f'prompt = "do {task_id}"']
    path = tmp_path / "plan.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_plan(path)


class Harness:
    """A plan, a store, a scripted executor and a fake clock, and the events the runner emitted."""

    def __init__(self, tmp_path: Path, plan: Plan, launcher: FakeExecutor) -> None:
        self.plan = plan
        self.store = Store(tmp_path / "state.db")
        self.launcher = launcher
        self.clock = FakeClock()
        self.events: list[events.Event] = []
        self.repo = RepoInfo(root=tmp_path, base_ref="HEAD", base_commit="0" * 40)
        self.runner: Runner | None = None

    def make_runner(self, retry: bool = False) -> Runner:
        if retry:
            state = reopen_run(self.plan, self.store, find_run(self.plan, self.store, None), self.repo)
        else:
            state = new_run(self.plan, self.store, self.repo, self.clock.time())
        context = RunContext(self.plan, Layout.of(self.plan), self.repo.root, self.repo.base_commit)
        self.runner = Runner(
            context,
            state,
            self.launcher,
            KINDS,
            clock=self.clock,
            emit=self.events.append,
            rng=random.Random(7),
            retry=retry,
        )
        return self.runner

    async def run(self, retry: bool = False) -> RunStatus:
        return await self.make_runner(retry).execute()

    def states(self) -> dict[str, tuple[str, int]]:
        assert self.runner is not None
        return {r.task_id: (r.state.value, r.attempts) for r in self.store.tasks(self.runner.state.run_id)}


async def test_jobs_limit_is_reached_and_never_exceeded(tmp_path: Path) -> None:
    """With jobs = 2 and five tasks, exactly two agents run at once at the peak. (Attempts of
    ten virtual seconds each, on a clock that moves only when everything waits: the store
    commits an attempt's start on a thread of its own, and an instant play could end before
    the next attempt's start is committed.)"""
    plan = write_plan(tmp_path, [["a", "b", "c", "d", "e"]])
    h = Harness(tmp_path, plan, FakeExecutor({}))
    clock = VirtualClock(busy=lambda: h.store.writes_in_flight > 0)
    h.clock = clock  # type: ignore[assignment]
    h.launcher = TimedExecutor(clock, dict.fromkeys("abcde", 10.0))
    async with clock.running():
        assert await h.run() is RunStatus.SUCCEEDED
    assert h.launcher.max_running == 2
    assert {s for s, _ in h.states().values()} == {"succeeded"}


async def test_next_wave_starts_after_every_task_of_the_previous_one_ended(tmp_path: Path) -> None:
    """Wave two's first start comes after wave one's last end."""
    plan = write_plan(tmp_path, [["a", "b", "c"], ["d", "e"]])
    slow = Play(steps=50)
    h = Harness(tmp_path, plan, FakeExecutor({"c": [slow]}))
    assert await h.run() is RunStatus.SUCCEEDED
    log = h.launcher.log
    last_end_wave1 = max(i for i, (kind, task, _) in enumerate(log) if kind == "end" and task in "abc")
    first_start_wave2 = min(i for i, (kind, task, _) in enumerate(log) if kind == "start" and task in "de")
    assert last_end_wave1 < first_start_wave2


async def test_failing_twice_then_succeeding_uses_three_attempts_with_backoff(tmp_path: Path) -> None:
    """retries = 2: two failures, then success; the retries waited retry_delay, then twice that."""
    plan = write_plan(tmp_path, [["flaky"]], defaults='retries = 2\nretry_delay = "10s"')
    h = Harness(tmp_path, plan, FakeExecutor({"flaky": [Play(code=3), Play(code=3), Play(code=0)]}))
    assert await h.run() is RunStatus.SUCCEEDED
    assert h.states()["flaky"] == ("succeeded", 3)
    backoffs = [s for s in h.clock.slept if s >= 10]
    assert len(backoffs) == 2
    assert 10 <= backoffs[0] <= 12.5
    assert 20 <= backoffs[1] <= 25
    failed = [e for e in h.events if isinstance(e, events.AttemptFailed)]
    assert [(e.attempt, e.reason) for e in failed] == [(1, "exit 3"), (2, "exit 3")]
    attempts = h.store.attempts(h.runner.state.run_id, "flaky")  # type: ignore[union-attr]
    assert [a.reason for a in attempts] == ["exit 3", "exit 3", "ok"]


async def test_a_task_failing_for_good_stops_later_waves(tmp_path: Path) -> None:
    """A task out of retries fails, its wave still finishes, the next wave is not run."""
    plan = write_plan(tmp_path, [["bad", "good"], ["later"]], defaults="retries = 1")
    h = Harness(tmp_path, plan, FakeExecutor({"bad": [Play(code=1)]}))
    assert await h.run() is RunStatus.FAILED
    assert h.states() == {"bad": ("failed", 2), "good": ("succeeded", 1), "later": ("not_run", 0)}
    assert all(task != "later" for _, task, _ in h.launcher.log)


async def test_retry_failed_reruns_only_what_did_not_succeed(tmp_path: Path) -> None:
    """--retry-failed runs the failed and the not-run tasks, in wave order, and no others."""
    plan = write_plan(tmp_path, [["bad", "good"], ["later"]], defaults="retries = 0")
    launcher = FakeExecutor({"bad": [Play(code=1), Play(code=0)]})
    h = Harness(tmp_path, plan, launcher)
    assert await h.run() is RunStatus.FAILED
    first_run = h.runner.state.run_id  # type: ignore[union-attr]
    launcher.log.clear()
    assert await h.run(retry=True) is RunStatus.SUCCEEDED
    assert h.runner.state.run_id == first_run  # type: ignore[union-attr]
    started = [task for kind, task, _ in launcher.log if kind == "start"]
    assert started == ["bad", "later"]
    assert h.states() == {"bad": ("succeeded", 2), "good": ("succeeded", 1), "later": ("succeeded", 1)}


async def test_hanging_agent_is_stopped_at_its_timeout(tmp_path: Path) -> None:
    """An agent that prints and then hangs is stopped when the wall-clock timeout is reached."""
    plan = write_plan(tmp_path, [["hang"]], defaults='retries = 0\ntimeout = "60s"\nstall_timeout = "1h"')
    h = Harness(tmp_path, plan, FakeExecutor({"hang": [Play(hang=True, output=[b"working\n"])]}))
    assert await h.run() is RunStatus.FAILED
    assert h.states()["hang"] == ("failed", 1)
    assert h.store.tasks(h.runner.state.run_id)[0].reason == "timeout"  # type: ignore[union-attr]
    assert 60 <= h.clock.now - 1_000_000.0 < 80


async def test_silent_agent_is_stopped_as_stalled_before_its_timeout(tmp_path: Path) -> None:
    """No output and no CPU figures for stall_timeout: reason stalled, long before the timeout."""
    plan = write_plan(tmp_path, [["quiet"]], defaults='retries = 0\ntimeout = "1h"\nstall_timeout = "20s"')
    h = Harness(tmp_path, plan, FakeExecutor({"quiet": [Play(hang=True)]}))
    assert await h.run() is RunStatus.FAILED
    assert h.store.tasks(h.runner.state.run_id)[0].reason == "stalled"  # type: ignore[union-attr]
    assert 20 <= h.clock.now - 1_000_000.0 < 30


async def test_interrupt_stops_running_attempts_and_starts_nothing_new(tmp_path: Path) -> None:
    """interrupt(): the running task ends interrupted, waiting ones and later waves not_run."""
    plan = write_plan(tmp_path, [["a", "b", "c"], ["d"]], defaults='stall_timeout = "1h"', jobs=1)
    h = Harness(tmp_path, plan, FakeExecutor({"a": [Play(hang=True)]}))
    runner = h.make_runner()

    async def interrupt_when_started() -> None:
        while h.launcher.running == 0:
            await anyio.lowlevel.checkpoint()
        runner.interrupt()

    async with anyio.create_task_group() as tg:
        tg.start_soon(interrupt_when_started)
        status = await runner.execute()
    assert status is RunStatus.INTERRUPTED
    assert h.states() == {
        "a": ("interrupted", 1),
        "b": ("not_run", 0),
        "c": ("not_run", 0),
        "d": ("not_run", 0),
    }


async def test_memory_admission_waits_and_says_so_once(tmp_path: Path) -> None:
    """While available memory is below min_free_memory, nothing starts; one notice is emitted."""
    plan = write_plan(tmp_path, [["a", "b"]], defaults='min_free_memory = "1G"')
    h = Harness(tmp_path, plan, FakeExecutor({}))
    free = iter([0, 0, 0, 0, 0] + [1 << 40] * 100)
    h.launcher.memory = lambda: next(free)
    assert await h.make_runner().execute() is RunStatus.SUCCEEDED
    notices = [e for e in h.events if isinstance(e, events.Notice)]
    assert len(notices) == 1
    assert "waiting for memory" in notices[0].message


async def test_agent_protocol_environment_and_prompt(tmp_path: Path) -> None:
    """Each attempt gets the PAGENT_* variables and its prompt as a file, never on argv."""
    plan = write_plan(tmp_path, [["a"]])
    h = Harness(tmp_path, plan, FakeExecutor({}))
    await h.run()
    spec = h.launcher.specs[0]
    assert spec.env["PAGENT_TASK_ID"] == "a"
    assert spec.env["PAGENT_WAVE"] == "w1"
    assert spec.env["PAGENT_ATTEMPT"] == "1"
    assert spec.env["PAGENT_RUN_ID"] == h.runner.state.run_id  # type: ignore[union-attr]
    assert spec.prompt_file is not None
    assert spec.prompt_file.read_text() == "do a"
    assert "do a" not in " ".join(spec.argv)
    # The overlay names no location: the executor adds those as they are where the agent runs.
    assert not {"PAGENT_PROMPT_FILE", "PAGENT_WORKTREE", "PAGENT_COOKIE"} & set(spec.env)


async def test_claude_kind_judges_by_the_result_event_not_the_exit_code(tmp_path: Path) -> None:
    """A claude-kind agent that exits 0 after an is_error result has failed."""
    plan = write_plan(
        tmp_path,
        [["c"]],
        extra='[agents.cc]\ncommand = ["claude-wrapper"]\nkind = "claude"\n',
        defaults='retries = 0\nagent = "cc"',
    )
    result = {
        "type": "result",
        "subtype": "success",
        "is_error": True,
        "api_error_status": 400,
        "result": "API Error: 400",
        "session_id": "s1",
        "num_turns": 1,
        "total_cost_usd": 0,
    }
    play = Play(code=0, output=[json.dumps(result).encode() + b"\n"])
    h = Harness(tmp_path, plan, FakeExecutor({"c": [play]}))
    assert await h.run() is RunStatus.FAILED
    assert h.store.tasks(h.runner.state.run_id)[0].reason == "api-error 400"  # type: ignore[union-attr]
