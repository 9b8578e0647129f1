"""Liveness with real agents: hung, stubborn, daemon-leaving, busy and chatty processes.

Each test runs a plan in-process through ``execute_plan`` (the real ``LocalExecutor``) with the
issue's settings: ``stall_timeout = "2s"``, ``kill_grace = "1s"``, ``retries = 0``. The fake
agents live in ``tests/agents``; they announce themselves through pid and report files.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import psutil
import pytest

from supervisor.engine import events
from supervisor.engine.invocation import RunResult, execute_plan
from supervisor.guardian import GUARDIAN
from supervisor.launch import proctree
from supervisor.launch.local import LocalExecutor
from supervisor.seam import AttemptKey, AttemptSpec
from supervisor.state.store import Store
from supervisor.ui.compose import KINDS, load_plan
from supervisor.workspace.local import Worktrees
from tests.agents import LIVENESS, agent, await_file, kill_all, running, write_plan
from tests.conftest import bin_path

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

KILL_GRACE = 1.0


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def plans(tmp_path: Path) -> Iterator[Path]:
    """Where the test writes its plan; afterwards nothing carrying the plan's cookie survives."""
    path = tmp_path / "plans"
    yield path
    if (path / "plan.toml").exists():
        kill_all(proctree.with_cookie(f"{load_plan(path / 'plan.toml').uid}:"))


class Recorder:
    """Collects the runner's events with the wall-clock time each arrived."""

    def __init__(self) -> None:
        self.events: list[tuple[float, events.Event]] = []

    def __call__(self, event: events.Event) -> None:
        self.events.append((time.time(), event))

    def of(self, kind: type[Any]) -> list[Any]:
        return [event for _, event in self.events if isinstance(event, kind)]

    def finished_at(self, task_id: str) -> float:
        return next(t for t, e in self.events if isinstance(e, events.TaskFinished) and e.task_id == task_id)


def local(**options: Any) -> LocalExecutor:
    """The executor the CLI composes (local processes in worktrees), with test options."""
    return LocalExecutor(Worktrees(), **options)


async def run_plan(
    path: Path, timeout: float = 30, executor: LocalExecutor | None = None, **options: Any
) -> tuple[RunResult, Recorder]:
    recorder = Recorder()
    with anyio.fail_after(timeout):
        result = await execute_plan(
            load_plan(path), executor=executor or local(), kinds=KINDS, emit=recorder, **options
        )
    return result, recorder


def tasks(result: RunResult) -> dict[str, dict[str, Any]]:
    return {task["id"]: task for task in result.view["tasks"]}


def pid_process(pid_file: Path) -> psutil.Process | None:
    """The process named by the first pid in ``pid_file``, or ``None`` if it has gone."""
    try:
        return psutil.Process(int(pid_file.read_text().split()[0]))
    except psutil.NoSuchProcess:
        return None


def nothing_left(plan: Path) -> bool:
    """True when no process carries the cookie of any attempt of ``plan``."""
    return proctree.with_cookie(f"{load_plan(plan).uid}:") == []


def gone(pid: int) -> bool:
    try:
        return not running(psutil.Process(pid))
    except psutil.NoSuchProcess:
        return True


async def test_silent_agents_idle_or_trickling_cpu_are_stopped_as_stalled(
    plans: Path, repo: Path, tmp_path: Path
) -> None:
    """Two silent agents, one idle and one using 0.4% of a core (the Claude CLI stuck on a dead
    connection), both fail with reason stalled soon after stall_timeout (2 s)."""
    pid_file = tmp_path / "hang.pid"
    plan = write_plan(plans, repo, {"hang": agent("hang.py", pid_file), "trickle": agent("trickle.py", 0.4)})
    started = time.monotonic()
    result, _ = await run_plan(plan)
    took = time.monotonic() - started

    by_id = tasks(result)
    assert {k: (t["state"], t["reason"], t["attempts"]) for k, t in by_id.items()} == {
        "hang": ("failed", "stalled", 1),
        "trickle": ("failed", "stalled", 1),
    }
    assert result.exit_code == 1
    assert 2.0 <= took < 6.0
    assert gone(int(pid_file.read_text()))
    assert nothing_left(plan)
    assert "[pagent] stopping the agent: stalled" in Path(by_id["hang"]["log"]).read_text()


async def test_agent_ignoring_sigterm_is_killed_at_its_timeout(
    plans: Path, repo: Path, tmp_path: Path
) -> None:
    """timeout = 3s: SIGTERM is ignored by the agent and its child, SIGKILL follows kill_grace later."""
    pid_file = tmp_path / "stubborn.pid"
    plan = write_plan(
        plans,
        repo,
        {"stubborn": agent("stubborn.py", pid_file)},
        overrides={"stubborn": {"timeout": "3s"}},
    )
    started = time.monotonic()
    result, _ = await run_plan(plan)
    took = time.monotonic() - started

    task = tasks(result)["stubborn"]
    assert (task["state"], task["reason"]) == ("failed", "timeout")
    assert task["exit_code"] is None  # killed by a signal
    assert 3.0 + KILL_GRACE <= took < 3.0 + KILL_GRACE + 3.0
    main_pid, child_pid = (int(pid) for pid in pid_file.read_text().split())
    assert gone(main_pid)
    assert gone(child_pid)
    assert nothing_left(plan)
    assert "tick" in Path(task["log"]).read_text()


@pytest.mark.parametrize(
    "flags",
    [
        [],  # found by its PAGENT_COOKIE
        ["--same-session", "--no-cookie"],  # found as a member of the attempt's session
        ["--no-cookie"],  # an orphan come back to the supervisor, a child subreaper
    ],
    ids=["setsid-daemon-with-cookie", "own-group-daemon-without-cookie", "setsid-daemon-without-cookie"],
)
async def test_agent_leaving_a_daemon_on_its_stdout_succeeds_promptly(
    plans: Path, repo: Path, tmp_path: Path, flags: list[str]
) -> None:
    """A double-forked daemon that ignores SIGTERM holds stdout after the agent exits 0: the task
    succeeds within kill_grace of the exit, and the daemon is stopped however it hid."""
    pid_file, stamp = tmp_path / "daemon.pid", tmp_path / "exit.stamp"
    plan = write_plan(plans, repo, {"detach": agent("detach.py", pid_file, "--exit-stamp", stamp, *flags)})
    result, recorder = await run_plan(plan)
    daemon = pid_process(pid_file)
    try:
        task = tasks(result)["detach"]
        assert (task["state"], task["reason"]) == ("succeeded", "ok")
        waited = recorder.finished_at("detach") - float(stamp.read_text())
        assert waited < KILL_GRACE + 0.75
        assert daemon is None or not running(daemon)
        assert nothing_left(plan)
        assert "stopped 1 leftover process(es)" in Path(task["log"]).read_text()
    finally:
        kill_all([daemon] if daemon is not None else [])


async def test_agents_that_compute_silently_or_print_while_idle_are_alive(plans: Path, repo: Path) -> None:
    """For twice stall_timeout: one agent burns a core, one runs short busy children, one prints
    every 0.5 s using no CPU. None is stalled; all succeed."""
    plan = write_plan(
        plans,
        repo,
        {
            "burn": agent("burn.py", 4),
            "children": agent("burn_children.py", 4),
            "tick": agent("tick.py", 4, 0.5),
        },
    )
    result, _ = await run_plan(plan)
    by_id = tasks(result)
    assert {k: (t["state"], t["reason"]) for k, t in by_id.items()} == {
        "burn": ("succeeded", "ok"),
        "children": ("succeeded", "ok"),
        "tick": ("succeeded", "ok"),
    }
    assert all(t["duration"] >= 4.0 for t in by_id.values())


async def test_attempt_runs_in_its_own_session_with_its_cookie_and_recorded_identity(
    plans: Path, repo: Path, tmp_path: Path
) -> None:
    """The agent leads its own session and group (which the guardian stops should the supervisor
    die: no ``setpriv`` in front of it, so no parent-death signal of its own), and it and its
    child carry PAGENT_COOKIE; its pid and start time are in the store while it runs."""
    report, flag = tmp_path / "report.json", tmp_path / "flag"
    path = write_plan(plans, repo, {"look": agent("introspect.py", report, flag)})
    plan = load_plan(path)
    recorder = Recorder()
    results: list[RunResult] = []

    async def run() -> None:
        results.append(await execute_plan(plan, executor=local(), kinds=KINDS, emit=recorder))

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            try:
                facts = json.loads(await await_file(report))
                assert facts["sid"] == facts["pgid"] == facts["pid"]
                assert facts["sid"] != os.getsid(0)
                assert GUARDIAN.running
                assert facts["pdeathsig"] == 0
                (started,) = recorder.of(events.RunStarted)
                assert facts["cookie"] == f"{plan.uid}:{started.run_id}:look:1"
                found = {p.pid for p in proctree.with_cookie(f"{plan.uid}:")}
                assert found == {facts["pid"], facts["child"]}
                child = psutil.Process(facts["child"])
                assert child.ppid() == facts["pid"]
                assert os.getpgid(child.pid) == facts["pgid"]

                # A running attempt's reference is written REF_DELAY seconds after its start.
                deadline = time.monotonic() + 10
                while True:
                    store = Store(plan.state_dir / "state.db")
                    try:
                        (attempt,) = store.attempts(started.run_id, "look")
                    finally:
                        store.close()
                    if attempt.ref is not None or time.monotonic() > deadline:
                        break
                    await anyio.sleep(0.05)
                assert attempt.pid == facts["pid"]
                assert attempt.ref == f"{facts['pid']}:{psutil.Process(facts['pid']).create_time()!r}"
            finally:
                flag.touch()
    (result,) = results
    assert tasks(result)["look"]["state"] == "succeeded"


async def test_heartbeat_shows_live_figures_in_pagent_status(plans: Path, repo: Path, tmp_path: Path) -> None:
    """While an attempt runs, ``pagent status --json`` shows its pid, CPU, RSS, process count and
    seconds since its last output, sampled every tick."""
    report, flag = tmp_path / "report.json", tmp_path / "flag"
    path = write_plan(plans, repo, {"look": agent("introspect.py", report, flag)})
    live: dict[str, Any] = {}

    async def sample_status() -> None:
        await await_file(report)
        while live.get("cpu_percent") is None:
            done = await anyio.run_process([bin_path("pagent"), "status", path, "--json"])
            live.update(json.loads(done.stdout)["tasks"][0].get("live") or {})
        flag.touch()

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample_status)
            result, _ = await run_plan(path)
    facts = json.loads(report.read_text())
    assert live["pid"] == facts["pid"]
    assert live["procs"] == 2  # the agent and its child
    assert live["rss"] > 1 << 20
    assert live["cpu_percent"] >= 0
    assert 0 <= live["since_output"] < 2
    assert live["sampled_at"] is not None
    assert tasks(result)["look"]["state"] == "succeeded"


async def test_memory_admission_waits_without_starting_and_says_so_once(
    plans: Path, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With min_free_memory at the machine's total memory (more than is ever available, yet not
    more than the machine has: that would be refused at once) the agent never starts; the wait
    is reported once however often memory is checked, and SIGTERM ends it cleanly (exit 143)."""
    pid_file = tmp_path / "never.pid"
    path = write_plan(
        plans,
        repo,
        {"big": agent("hang.py", pid_file)},
        defaults={**LIVENESS, "min_free_memory": psutil.virtual_memory().total},
    )
    checks = 0

    def counting_available_memory() -> int:
        nonlocal checks
        checks += 1
        if checks == 20:  # the real memory, checked many times: enough waiting
            os.kill(os.getpid(), signal.SIGTERM)
        return proctree.available_memory()

    executor = local(available_memory=counting_available_memory)
    result, recorder = await run_plan(path, executor=executor, memory_poll=0.01)

    assert checks >= 20
    waiting = [n for n in recorder.of(events.Notice) if "waiting for memory" in n.message]
    assert len(waiting) == 1
    assert waiting[0].task_id == "big"
    assert "MiB required (min_free_memory)" in waiting[0].message
    assert recorder.of(events.AttemptStarted) == []
    assert not pid_file.exists()
    assert result.exit_code == 143
    task = tasks(result)["big"]
    assert (task["state"], task["attempts"]) == ("not_run", 0)


BUSY_CHILD_THEN_IDLE = """
import subprocess, sys, time
burn = "import time\\nend = time.process_time() + 0.3\\nwhile time.process_time() < end: pass"
subprocess.run([sys.executable, "-c", burn], check=True)
open(sys.argv[1], "w").close()
time.sleep(3600)
"""


async def test_sample_counts_the_cpu_of_descendants_that_have_exited(tmp_path: Path) -> None:
    """The tree's CPU total keeps what exited children used: it does not drop when they end, so
    an agent computing through short-lived processes is seen computing."""
    ready, prompt = tmp_path / "ready", tmp_path / "prompt.txt"
    prompt.write_text("x")
    key = AttemptKey(f"test-sample-{os.getpid()}-{time.monotonic_ns()}", "r", "t", 1)
    argv = (sys.executable, "-c", BUSY_CHILD_THEN_IDLE, str(ready))
    spec = AttemptSpec(key=key, argv=argv, env={}, cwd=tmp_path, prompt_file=prompt)
    with anyio.fail_after(15):
        async with local().start(spec, lambda data, stream: None) as handle:
            await await_file(ready)
            sample = handle.sample()
            await handle.stop(KILL_GRACE)
            exit = await handle.wait()
    assert sample is not None
    assert sample.procs == 1  # the child has exited
    assert sample.cpu_seconds >= 0.3
    assert exit.signal == signal.SIGTERM
