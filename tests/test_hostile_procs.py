"""Processes that try to outlive their attempt, supervisors killed at a bad moment, and plans
spelled in several ways.

Issue 12 promises: no process an attempt started survives the attempt or the next run's
recovery (a daemon that scrubbed its environment and left the session included); git and its
hooks are found and stopped by crash recovery like agents; the run lock and crash recovery key
on the plan's real path, so a symlinked or ``..``-spelled plan path is the same plan. Real
processes and signals on the installed CLI; each case was written
first against code that did not hold it (issue 12); the fixes made every one hold.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.agents import agent as worker_argv
from tests.agents import write_plan as write_worker_plan
from tests.conftest import status_json
from tests.hostile import (
    FifoTrap,
    Reaper,
    alive,
    ended_within,
    hanging_hook,
    pid_from,
    reaping,
    run,
    wait_for,
    write_plan,
)

pytestmark = pytest.mark.slow  # real processes (README, "Tests")


@pytest.fixture
def reaper(tmp_path: Path) -> Iterator[Reaper]:
    with reaping(tmp_path) as started:
        yield started


def kill_pidfile(path: Path) -> None:
    """Test clean-up: SIGKILL the process a pid file names, if it still runs."""
    if path.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(pid_from(path), signal.SIGKILL)


def test_a_daemon_that_scrubbed_its_environment_and_left_the_session_does_not_survive(
    tmp_path: Path, repo: Path
) -> None:
    """The agent double-forks a daemon into a session of its own, exec'd with an empty
    environment (no PAGENT_COOKIE) and ignoring SIGTERM. It comes back to the supervisor as an
    orphan (a child subreaper) and is stopped as the attempt ends; the next run finds nothing."""
    pidfile = tmp_path / "daemon.pid"
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": f"daemon {pidfile}\nwrite w.txt w"}})
    try:
        first = run(plan)
        assert first.returncode == 0, first.stderr
        survived_attempt = alive(pid_from(pidfile))
        # The next run (with an agent that starts nothing) repairs what earlier runs left.
        write_plan(tmp_path / "plans", repo, {"a": {"prompt": "write w.txt w"}})
        assert run(plan).returncode == 0
        assert not survived_attempt
        assert not alive(pid_from(pidfile))
    finally:
        kill_pidfile(pidfile)


def test_git_and_its_hook_do_not_survive_a_sigkilled_supervisor_and_the_next_run(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """SIGKILL of pagent-run while ``git worktree add`` waits for a hanging post-checkout hook:
    git and the hook keep running (no parent-death signal, no cookie); the next run must stop
    them before it starts anything. Before issue 12, they survive it. (If pagent's git skips hooks, the
    run simply ends and there is nothing to survive.)"""
    pidfile = tmp_path / "hook.pid"
    hook = hanging_hook(repo, "post-checkout", pidfile)
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    proc = reaper.start(plan)
    wait_for(lambda: pidfile.exists() or proc.poll() is not None, 20, "the hook or the end of the run")
    if not pidfile.exists():
        assert proc.wait() == 0, reaper.output(proc)
        return
    proc.kill()
    proc.wait()
    hook.unlink()  # the next run must not hang in it again
    done = run(plan)
    assert done.returncode == 0, done.stderr
    assert not alive(pid_from(pidfile))
    assert [p.name() for p in reaper.leftovers()] == []


def test_a_blocked_git_does_not_survive_a_sigkilled_supervisor_and_the_next_run(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """The same without hooks: ``git worktree add`` blocks on ``.git/info/attributes``, a FIFO.
    After SIGKILL of pagent-run that git lives on; the next run must stop it."""
    trap = FifoTrap(repo / ".git" / "info" / "attributes")
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    proc = reaper.start(plan)
    try:
        assert trap.wait_for_reader(20, proc), reaper.output(proc)
        blocked = [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "git"]
        assert blocked, "no git below pagent-run"
        proc.kill()
        proc.wait()
        trap.disarm()  # the next run finds a plain repository (the blocked git still waits)
        done = run(plan)
        survivors = [p.pid for p in blocked if alive(p.pid)]
    finally:
        trap.release()
    assert done.returncode == 0, done.stderr
    assert survivors == []


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("symlink-elsewhere"),
        pytest.param("symlink-beside"),
        pytest.param("dotdot"),
        pytest.param("directory-symlink"),
    ],
)
def test_a_plan_spelled_another_way_is_still_locked(
    tmp_path: Path, repo: Path, reaper: Reaper, spelling: str
) -> None:
    """While a run of the plan is active, ``pagent-run`` of the same file under another path
    exits 75. Holds for ``sub/../plan.toml`` and a symlinked directory (same lock file); today a
    symlink to the file -- beside it or elsewhere -- starts a second run at once."""
    release, started = tmp_path / "release", tmp_path / "started"
    plans = tmp_path / "plans"
    plan = write_plan(plans, repo, {"a": {"prompt": f"write {started} x\nwait-for {release}"}})
    if spelling == "symlink-elsewhere":
        (tmp_path / "elsewhere").mkdir()
        other = tmp_path / "elsewhere" / "plan.toml"
        other.symlink_to(plan)
    elif spelling == "symlink-beside":
        other = plans / "tonight.toml"
        other.symlink_to("plan.toml")
    elif spelling == "dotdot":
        (plans / "sub").mkdir()
        other = plans / "sub" / ".." / "plan.toml"
    else:
        (tmp_path / "alias").symlink_to(plans)
        other = tmp_path / "alias" / "plan.toml"
    first = reaper.start(plan)
    try:
        wait_for(started.exists, 20, "the first run's agent")
        second = reaper.start(other)
        code = ended_within(second, 5)
    finally:
        release.touch()
    assert ended_within(first, 30) == 0, reaper.output(first)
    assert code == 75, reaper.output(second)


SETTINGS = {"retries": 0, "stall_timeout": "1m", "kill_grace": "1s", "timeout": "2m"}


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param("same"),
        pytest.param("dotdot"),
        pytest.param("directory-symlink"),
    ],
)
def test_recovery_after_sigkill_finds_leftovers_whatever_the_plan_path_spelling(
    tmp_path: Path, repo: Path, reaper: Reaper, spelling: str
) -> None:
    """SIGKILL of pagent-run; its agent ignores SIGTERM and left a setsid'd daemon carrying the
    cookie. ``--retry-failed`` through another spelling of the plan path must stop both. Holds
    with the same spelling; today with ``sub/../plan.toml`` or via a symlinked directory the
    cookie prefix (sha1 of the path as spelled) differs and the daemon survives."""
    work = tmp_path / "work"
    work.mkdir()
    plans = tmp_path / "plans"
    plan = write_worker_plan(
        plans, repo, {"s": worker_argv("worker.py", work, "--ignore-term", "--leftover")}, defaults=SETTINGS
    )
    other = plan
    if spelling == "dotdot":
        (plans / "sub").mkdir()
        other = plans / "sub" / ".." / "plan.toml"
    elif spelling == "directory-symlink":
        (tmp_path / "alias").symlink_to(plans)
        other = tmp_path / "alias" / "plan.toml"
    proc = reaper.start(plan)
    try:
        wait_for(lambda: (work / "s.1.pid").exists() and (work / "s.leftover.pid").exists(), 20, "the agent")
        main, daemon = psutil.Process(pid_from(work / "s.1.pid")), pid_from(work / "s.leftover.pid")
        proc.kill()
        proc.wait()
        (work / "go").touch()
        done = run(other, "--retry-failed")
        assert done.returncode == 0, done.stderr
        assert "had been stopped without cleanup" in done.stderr
        assert not alive(main.pid)
        assert not alive(daemon)
    finally:
        kill_pidfile(work / "s.1.pid")
        kill_pidfile(work / "s.leftover.pid")


def test_an_agent_that_stops_itself_with_sigstop_is_stalled(tmp_path: Path, repo: Path) -> None:
    """Holds: a stopped process writes nothing and uses no CPU; it is stopped as ``stalled``
    (SIGTERM pends on a stopped process, SIGKILL does not) soon after ``stall_timeout``."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": "stop-self", "stall_timeout": "1s"}})
    done = run(plan, timeout=30)
    assert done.returncode == 1
    task = status_json(plan)["tasks"][0]
    assert (task["state"], task["reason"]) == ("failed", "stalled")
    assert task["duration"] < 6


def test_an_agent_that_sigkills_its_supervisor_is_repaired_by_the_next_run(
    tmp_path: Path, repo: Path
) -> None:
    """Holds: the agent commits, then SIGKILLs pagent-run. The other agent dies with it (the
    parent-death signal); ``--retry-failed`` reports the dead run, repairs its records and
    completes both tasks, and the first commit is still on the branch."""
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": {"prompt": "write w.txt w\ncommit w\nkill-parent 9\nsleep 5"}, "b": {"prompt": "sleep 30"}},
    )
    done = run(plan)
    assert done.returncode == -signal.SIGKILL
    write_plan(tmp_path / "plans", repo, {"a": {"prompt": "write w.txt w"}, "b": {"prompt": "write b.txt b"}})
    retried = run(plan, "--retry-failed")
    assert retried.returncode == 0, retried.stderr
    assert "had been stopped without cleanup" in retried.stderr
    view = status_json(plan)
    assert {t["id"]: (t["state"], t["attempts"]) for t in view["tasks"]} == {
        "a": ("succeeded", 2),
        "b": ("succeeded", 2),
    }


def test_an_agent_that_sigkills_the_guardian_is_still_stopped_with_its_supervisor(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """The agent SIGKILLs the supervisor's guardian, then sleeps. Within a liveness tick the
    supervisor finds the guardian gone and starts a new one, told the running agent's group;
    a SIGKILL of pagent-run then still stops the agent. Before, the agent outlived it (until
    the next run's recovery)."""
    pidfile = tmp_path / "agent.pid"
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": f"kill-guardian {pidfile}\nsleep 600"}})
    proc = reaper.start(plan)
    wait_for(lambda: pidfile.exists() or proc.poll() is not None, 20, "the agent's pid file")
    assert proc.poll() is None, reaper.output(proc)
    agent_pid, killed = (int(pid) for pid in pidfile.read_text().split())

    def replaced() -> bool:
        for child in psutil.Process(proc.pid).children():
            with contextlib.suppress(psutil.Error):  # a git call that has just ended
                alive_child = child.pid != killed and child.status() != psutil.STATUS_ZOMBIE
                if alive_child and "guardian.py" in " ".join(child.cmdline()):
                    return True
        return False

    wait_for(replaced, 10, "a new guardian")  # a tick is 2.5 s here (stall_timeout 10 s)
    assert alive(agent_pid)
    proc.kill()
    proc.wait()
    wait_for(lambda: not alive(agent_pid), 10, "the agent's end")
