"""Signals to ``pagent-run`` itself, on the installed CLI with real agents and real signals.

SIGTERM and SIGINT stop every agent and exit 143 / 130 with the tasks recorded ``interrupted``;
after SIGKILL the next ``--retry-failed`` stops what the dead run left before it starts anything.
The agents (``tests/agents/worker.py``) write a pid file once working: that is the handshake
every signal waits for. Each start and success is appended to ``runs.log``, to count them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.launch import proctree
from supervisor.state.store import Store
from supervisor.ui.compose import load_plan
from tests.agents import agent, kill_all, running, wait_for, write_plan
from tests.conftest import bin_path

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

KILL_GRACE = 1.0
# Long limits: only the signals under test may end these agents.
SETTINGS = {"retries": 0, "stall_timeout": "1m", "kill_grace": "1s", "timeout": "2m"}


class Supervisors:
    """Starts ``pagent-run`` in the background; at teardown kills whatever of the test survived."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, plan: Path) -> subprocess.Popen[bytes]:
        n = len(self.started)
        with open(self.tmp_path / f"pagent-run.{n}.out", "wb") as out:
            proc = subprocess.Popen(
                [bin_path("pagent-run"), plan],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach it only from the test
            )
        self.started.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        return (self.tmp_path / f"pagent-run.{self.started.index(proc)}.out").read_text()

    def cleanup(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        plan = self.tmp_path / "plans" / "plan.toml"
        if plan.exists():
            kill_all(proctree.with_cookie(f"{load_plan(plan).uid}:"))


@pytest.fixture
def supervisors(tmp_path: Path) -> Iterator[Supervisors]:
    started = Supervisors(tmp_path)
    yield started
    started.cleanup()


def run(*args: str | Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def status(plan: Path) -> dict[str, Any]:
    done = run(bin_path("pagent"), "status", plan, "--json")
    assert done.returncode == 0, done.stderr
    view: dict[str, Any] = json.loads(done.stdout)
    return view


def log_lines(work: Path) -> Counter[tuple[str, str, str]]:
    """(event, task, attempt) -> how often ``worker.py`` appended it to runs.log."""
    lines = (work / "runs.log").read_text().splitlines()
    return Counter((event, task, attempt) for event, task, attempt, *_ in map(str.split, lines))


def await_agents(proc: subprocess.Popen[bytes], *pid_files: Path) -> list[psutil.Process]:
    """Wait for the agents' handshakes (pid files) while the supervisor runs; their processes."""
    wait_for(lambda: all(f.exists() for f in pid_files) or proc.poll() is not None, 20, "the agents")
    assert proc.poll() is None, "pagent-run ended before its agents were working"
    return [psutil.Process(int(f.read_text())) for f in pid_files]


@pytest.mark.parametrize(
    ("signum", "exit_code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_signal_stops_every_agent_then_retry_failed_completes_them(
    tmp_path: Path, repo: Path, supervisors: Supervisors, signum: signal.Signals, exit_code: int
) -> None:
    """Two agents work (jobs = 2), one ignoring SIGTERM; the signal makes pagent-run stop both
    (SIGKILL after kill_grace) and exit within a few seconds with the signal's code, both tasks
    interrupted; once fixed, --retry-failed completes them."""
    work = tmp_path / "work"
    work.mkdir()
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": agent("worker.py", work), "b": agent("worker.py", work, "--ignore-term")},
        jobs=2,
        defaults=SETTINGS,
    )
    proc = supervisors.start(plan)
    agents = await_agents(proc, work / "a.1.pid", work / "b.1.pid")

    sent = time.monotonic()
    proc.send_signal(signum)
    assert proc.wait(timeout=KILL_GRACE + 10) == exit_code, supervisors.output(proc)
    assert KILL_GRACE <= time.monotonic() - sent < KILL_GRACE + 3
    assert not any(running(p) for p in agents)
    assert "Traceback" not in supervisors.output(proc)

    view = status(plan)
    assert (view["status"], view["exit_code"]) == ("interrupted", exit_code)
    assert {t["id"]: (t["state"], t["reason"]) for t in view["tasks"]} == {
        "a": ("interrupted", "interrupted"),
        "b": ("interrupted", "interrupted"),
    }

    (work / "go").touch()  # the fix: new attempts succeed at once
    retried = run(bin_path("pagent-run"), plan, "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    view = status(plan)
    assert {t["id"]: (t["state"], t["attempts"]) for t in view["tasks"]} == {
        "a": ("succeeded", 2),
        "b": ("succeeded", 2),
    }
    assert log_lines(work) == Counter(
        {(event, task, attempt): 1 for task in "ab" for event, attempt in [("start", "1"), ("start", "2")]}
        | {("done", task, "2"): 1 for task in "ab"}
    )


def test_after_sigkill_the_next_run_stops_leftovers_then_completes_each_task_once(
    tmp_path: Path, repo: Path, supervisors: Supervisors
) -> None:
    """SIGKILL of pagent-run: an agent dies with it (parent-death signal); one that ignores SIGTERM
    and the setsid'd daemon it started survive. The next --retry-failed stops both before
    starting anything, records the dead run's attempts interrupted, and runs each task once."""
    work = tmp_path / "work"
    work.mkdir()
    path = write_plan(
        tmp_path / "plans",
        repo,
        {
            "plain": agent("worker.py", work),
            "stubborn": agent("worker.py", work, "--ignore-term", "--leftover"),
        },
        jobs=2,
        defaults=SETTINGS,
    )
    proc = supervisors.start(path)
    plain, stubborn = await_agents(proc, work / "plain.1.pid", work / "stubborn.1.pid")
    daemon = psutil.Process(int((work / "stubborn.leftover.pid").read_text()))
    assert os.getsid(daemon.pid) not in {os.getsid(stubborn.pid), os.getsid(0)}

    proc.kill()
    assert proc.wait(timeout=10) == -signal.SIGKILL
    wait_for(lambda: not running(plain), 5, "the parent-death signal to end the plain agent")
    assert running(stubborn)
    assert running(daemon)

    (work / "go").touch()
    retried = run(bin_path("pagent-run"), path, "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert "had been stopped without cleanup" in retried.stderr
    assert "stopped 2 leftover agent process(es) of earlier runs" in retried.stderr
    assert not running(stubborn)
    assert not running(daemon)
    plan = load_plan(path)
    assert proctree.with_cookie(f"{plan.uid}:") == []

    # Each task ran exactly once more, never beside its leftover (no "overlap" line).
    assert log_lines(work) == Counter(
        {("start", task, attempt): 1 for task in ("plain", "stubborn") for attempt in "12"}
        | {("done", task, "2"): 1 for task in ("plain", "stubborn")}
    )
    view = status(path)
    assert view["status"] == "succeeded"
    assert {t["id"]: (t["state"], t["attempts"]) for t in view["tasks"]} == {
        "plain": ("succeeded", 2),
        "stubborn": ("succeeded", 2),
    }
    store = Store(plan.state_dir / "state.db")
    try:
        reasons = {
            task: [a.reason for a in store.attempts(view["run_id"], task)] for task in ("plain", "stubborn")
        }
    finally:
        store.close()
    assert reasons == {"plain": ["interrupted", "ok"], "stubborn": ["interrupted", "ok"]}
