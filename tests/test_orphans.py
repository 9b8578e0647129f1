"""Orphans that scrubbed the cookie and left the session, with real processes and signals.

The supervisor is a child subreaper (``supervisor.launch.orphans``): a daemon that double-forks,
calls ``setsid``, is exec'd with an empty environment and ignores SIGTERM (``tests/agents/rogue.py``,
action ``daemon``) comes back to it as an orphan, and is stopped once no running attempt can own
it -- never while an attempt that was running when it was created still runs. After a SIGKILL of
the supervisor the subreaper is gone with it: the next run finds what carries the cookie, not
what scrubbed it (the README's "Process control" says so).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from supervisor.launch import orphans
from supervisor.launch.local import LocalExecutor
from supervisor.seam import AttemptKey, AttemptSpec
from supervisor.workspace.local import Worktrees
from tests.agents import agent as worker_argv
from tests.hostile import ROGUE, Reaper, alive, pid_from, reaping, run, wait_for, write_plan

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

GRACE = 0.5


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def reaper(tmp_path: Path) -> Iterator[Reaper]:
    with reaping(tmp_path) as started:
        yield started


@pytest.fixture
def executor() -> LocalExecutor:
    made = LocalExecutor(Worktrees())
    if not orphans.ORPHANS.enabled:
        pytest.fail("this Linux should let the supervisor be a child subreaper")
    return made


def rogue(tmp_path: Path, name: str, *actions: str) -> AttemptSpec:
    """An attempt of the hostile agent doing ``actions`` (one per line) in ``tmp_path``."""
    prompt = tmp_path / f"{name}.prompt"
    prompt.write_text("\n".join(actions) + "\n")
    key = AttemptKey(f"test-orphans-{os.getpid()}-{time.monotonic_ns()}", "r", name, 1)
    return AttemptSpec(key=key, argv=(sys.executable, str(ROGUE)), env={}, cwd=tmp_path, prompt_file=prompt)


async def attempt(executor: LocalExecutor, spec: AttemptSpec, stopped: dict[str, int]) -> None:
    """Run ``spec`` to its end as the engine does (wait, then finish); note what finish stopped."""
    async with executor.start(spec, lambda data, stream: None) as handle:
        await handle.wait()
        stopped[spec.task_id] = await handle.finish(GRACE)


async def appears(path: Path, timeout: float = 15) -> int:
    """The pid a daemon wrote to ``path`` (or 0 for another handshake), once it is there."""
    with anyio.fail_after(timeout):
        while not path.exists() or not path.read_text():  # noqa: ASYNC110 - another process writes it
            await anyio.sleep(0.02)
    text = path.read_text().split()[0]
    return int(text) if text.isdigit() else 0


def zombie_children() -> list[int]:
    """Children of this process's main thread that died and were never reaped."""
    me = os.getpid()
    pids = Path(f"/proc/{me}/task/{me}/children").read_text().split()
    return [int(p) for p in pids if psutil.Process(int(p)).status() == psutil.STATUS_ZOMBIE]


def kill(pid: int) -> None:
    """Test clean-up: SIGKILL ``pid`` if it still runs."""
    if alive(pid):
        psutil.Process(pid).kill()


async def test_a_scrubbed_daemon_is_stopped_when_its_attempt_ends(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    """Empty environment, own session, SIGTERM ignored: stopped (SIGKILL after the grace) as the
    attempt ends, counted among its leftovers, and its zombie (and that of the intermediate
    process) reaped."""
    pidfile = tmp_path / "daemon.pid"
    stopped: dict[str, int] = {}
    try:
        with anyio.fail_after(20):
            await attempt(executor, rogue(tmp_path, "a", f"daemon {pidfile}"), stopped)
        assert not alive(pid_from(pidfile))
        assert stopped == {"a": 1}
        assert zombie_children() == []
    finally:
        kill(pid_from(pidfile))


async def test_a_running_attempts_daemon_is_not_stopped_when_another_attempt_ends(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    """Attempt ``x`` runs; ``y`` starts and leaves a scrubbed daemon (a server its tests use,
    say) while it goes on working. ``x`` ends: the daemon was created while ``y`` ran, so it may
    be ``y``'s and lives on. ``y`` ends: now it is stopped."""
    pidfile, x_done, y_done = tmp_path / "y-daemon.pid", tmp_path / "x.go", tmp_path / "y.go"
    x_up = tmp_path / "x.up"
    stopped: dict[str, int] = {}
    ended: dict[str, bool] = {}

    async def run(spec: AttemptSpec) -> None:
        await attempt(executor, spec, stopped)
        ended[spec.task_id] = True

    try:
        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                tg.start_soon(run, rogue(tmp_path, "x", f"write {x_up} up", f"wait-for {x_done}"))
                await appears(x_up)  # x's process exists before y's does
                tg.start_soon(run, rogue(tmp_path, "y", f"daemon {pidfile}", f"wait-for {y_done}"))
                daemon = await appears(pidfile)
                x_done.touch()
                while "x" not in ended:  # noqa: ASYNC110 - the other task sets it
                    await anyio.sleep(0.02)
                assert alive(daemon), "the daemon of a running attempt was stopped"
                assert stopped["x"] == 0
                y_done.touch()
        assert not alive(daemon)
        assert stopped["y"] == 1
    finally:
        kill(pid_from(pidfile))


async def test_an_orphan_older_than_every_running_attempt_is_stopped_at_once(
    executor: LocalExecutor, tmp_path: Path
) -> None:
    """``x`` leaves a scrubbed daemon, then ``y`` starts (later than the daemon: it cannot own
    it), then ``x`` ends: the daemon is stopped while ``y`` still runs."""
    pidfile, x_done, y_done = tmp_path / "x-daemon.pid", tmp_path / "x.go", tmp_path / "y.go"
    y_up = tmp_path / "y.up"
    stopped: dict[str, int] = {}
    try:
        with anyio.fail_after(40):
            async with anyio.create_task_group() as tg:
                tg.start_soon(
                    attempt,
                    executor,
                    rogue(tmp_path, "x", f"daemon {pidfile}", f"wait-for {x_done}"),
                    stopped,
                )
                daemon = await appears(pidfile)
                tg.start_soon(
                    attempt, executor, rogue(tmp_path, "y", f"write {y_up} up", f"wait-for {y_done}"), stopped
                )
                await appears(y_up)
                x_done.touch()
                while "x" not in stopped:  # noqa: ASYNC110 - the other task sets it
                    await anyio.sleep(0.02)
                assert not alive(daemon)
                assert "y" not in stopped  # y was still running
                y_done.touch()
        assert stopped == {"x": 1, "y": 0}
    finally:
        kill(pid_from(pidfile))


def test_a_run_leaves_no_scrubbed_daemon_of_concurrent_tasks(tmp_path: Path, repo: Path) -> None:
    """Through the installed CLI: three tasks at once, each leaving a scrubbed daemon and ending
    at different times; when ``pagent-run`` exits none of the daemons runs."""
    pidfiles = [tmp_path / f"d{n}.pid" for n in range(3)]
    tasks = {f"t{n}": {"prompt": f"daemon {pidfiles[n]}\nsleep {0.3 * n}"} for n in range(3)}
    plan = write_plan(tmp_path / "plans", repo, tasks)
    try:
        done = run(plan)
        assert done.returncode == 0, done.stderr
        assert [alive(pid_from(p)) for p in pidfiles] == [False, False, False]
    finally:
        for path in pidfiles:
            if path.exists():
                kill(pid_from(path))


def test_after_sigkill_of_the_supervisor_the_next_run_stops_what_carries_the_cookie(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """SIGKILL of ``pagent-run`` while one agent left a setsid'd daemon *with* its cookie and
    another a scrubbed one. The subreaper died with the supervisor, so both were re-parented to
    init; ``--retry-failed`` stops the first (by its cookie) before it starts anything. The
    scrubbed one is out of reach for any later process: it survives, exactly as the README says
    (this assertion pins that documented limit)."""
    work = tmp_path / "work"
    work.mkdir()
    scrubbed = tmp_path / "scrubbed.pid"
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {
            "cookie": {
                "agent": "py",
                "extra_args": worker_argv("worker.py", work, "--ignore-term", "--leftover"),
            },
            "scrub": {"prompt": f"daemon {scrubbed}\nwait-for {tmp_path / 'never'}\nsleep 60"},
        },
        defaults={"timeout": "2m", "stall_timeout": "1m"},
        agents={"py": {"command": ["{python}"]}},
    )
    proc = reaper.start(plan)
    try:
        both = (work / "cookie.leftover.pid", scrubbed)
        wait_for(lambda: all(p.exists() for p in both) or proc.poll() is not None, 20, "both daemons")
        assert proc.poll() is None, reaper.output(proc)
        with_cookie, without = pid_from(work / "cookie.leftover.pid"), pid_from(scrubbed)
        assert psutil.Process(without).ppid() == proc.pid  # adopted by the supervisor
        proc.kill()
        proc.wait()
        assert psutil.Process(without).ppid() != proc.pid
        # The fix: the worker's next attempt ends at once, the hostile one leaves nothing.
        (work / "go").touch()
        write_plan(
            tmp_path / "plans",
            repo,
            {
                "cookie": {"agent": "py", "extra_args": worker_argv("worker.py", work)},
                "scrub": {"prompt": "write w.txt w"},
            },
            agents={"py": {"command": ["{python}"]}},
        )
        done = run(plan, "--retry-failed")
        assert done.returncode == 0, done.stderr
        assert "had been stopped without cleanup" in done.stderr
        assert not alive(with_cookie)
        assert alive(without)
    finally:
        for path in (work / "cookie.leftover.pid", work / "cookie.1.pid", scrubbed):
            if path.exists():
                kill(pid_from(path))
