"""The local launcher's own mechanics, with real processes: launch failures, the agent's end
with its supervisor (through the guardian, and without it through the parent-death signal, by
``setpriv`` and by the ``preexec_fn`` fallback) and the pid mark that limits the search for an
attempt's processes to those created after it started."""

from __future__ import annotations

import dataclasses
import errno
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from supervisor.launch import process, proctree
from supervisor.launch.local import LocalExecutor
from supervisor.launch.process import LocalLauncher
from supervisor.seam import AttemptKey, AttemptSpec
from supervisor.workspace.local import Worktrees
from tests.conftest import bin_path, cli, status_json

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

MODES = ["guardian", "setpriv", "preexec"]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def launcher(mode: str, monkeypatch: pytest.MonkeyPatch) -> LocalExecutor:
    """A local executor whose agents end with it the way ``mode`` says."""
    if mode != "guardian":
        monkeypatch.setattr(process, "_guardian", lambda: None)
    if mode == "preexec":
        monkeypatch.setattr(process, "_pdeathsig_command", lambda: None)
    elif process._pdeathsig_command() is None:
        pytest.fail("util-linux setpriv with --pdeathsig is missing: the launcher would fork")
    made = LocalLauncher()
    assert (made._guardian is not None) == (mode == "guardian")
    assert (made._pdeathsig()[0] is None) == (mode == "preexec")
    return LocalExecutor(Worktrees(), launcher=made)


def spec(tmp_path: Path, *argv: str, env: dict[str, str] | None = None) -> AttemptSpec:
    """An attempt of ``argv`` in ``tmp_path``; ``env`` is the overlay on the executor's own."""
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("nothing")
    key = AttemptKey(f"test-local-{os.getpid()}-{time.monotonic_ns()}", "r", "t", 1)
    return AttemptSpec(key=key, argv=argv, env=env or {}, cwd=tmp_path, prompt_file=prompt)


@pytest.mark.parametrize("mode", MODES)
async def test_a_program_that_cannot_be_executed_fails_the_launch(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Missing (by path or on PATH) and not executable: ``OSError`` from ``start``, as without a
    wrapper in front of the agent, never an exit code of the wrapper."""
    starter = launcher(mode, monkeypatch)
    not_executable = tmp_path / "agent.sh"
    not_executable.write_text("#!/bin/sh\nexit 0\n")
    not_executable.chmod(0o644)
    cases = [
        (spec(tmp_path, str(tmp_path / "missing")), errno.ENOENT),
        (spec(tmp_path, "pagent-no-such-agent", env={"PATH": "/usr/bin:/bin"}), errno.ENOENT),
        (spec(tmp_path, str(not_executable)), errno.EACCES),
    ]
    for case, code in cases:
        with pytest.raises(OSError) as raised:
            async with starter.start(case, lambda data, stream: None):
                pytest.fail(f"{case.argv[0]} started")
        assert raised.value.errno == code, case.argv
    # A program found on PATH by name starts (and the wrapper passes its exit code through).
    async with starter.start(spec(tmp_path, "sh", "-c", "exit 3"), lambda data, stream: None) as handle:
        exit = await handle.wait()
        await handle.finish(1.0)
    assert (exit.code, exit.signal) == (3, None)


def test_an_agent_that_cannot_be_started_fails_its_task_with_launch_failed(repo: Path) -> None:
    plan = repo / "plan.toml"
    plan.write_text(
        'jobs = 1\n[defaults]\nagent = "ghost"\nretries = 0\nisolation = "none"\n'
        '[agents.ghost]\ncommand = ["{plan_dir}/no-such-agent"]\n'
        '[[waves]]\nname = "w"\n[[waves.tasks]]\nid = "t"\nprompt = "p"\n'
    )
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 1, done.stderr
    task = status_json(plan)["tasks"][0]
    assert (task["state"], task["reason"], task["attempts"]) == ("failed", "launch-failed", 1)
    log = cli(bin_path("pagent"), "logs", plan, "t")
    assert "cannot start" in log.stdout
    assert "No such file or directory" in log.stdout


DRIVER = """
import sys, anyio
from pathlib import Path
from supervisor.launch import process
from supervisor.launch.local import LocalExecutor
from supervisor.workspace.local import Worktrees
from tests.test_local import spec

async def main() -> None:
    if sys.argv[1] != "guardian":
        process._guardian = lambda: None
    if sys.argv[1] == "preexec":
        process._pdeathsig_command = lambda: None
    starter = LocalExecutor(Worktrees())
    async with starter.start(spec(Path(sys.argv[2]), "sleep", "600"), lambda d, s: None) as handle:
        print(handle.pid, flush=True)
        await anyio.sleep(600)

anyio.run(main)
"""


@pytest.mark.parametrize("mode", MODES)
def test_the_agent_gets_sigterm_when_the_supervisor_dies(mode: str, tmp_path: Path) -> None:
    """SIGKILL of the process that launched the agent (``sleep``, which has no handler for
    SIGTERM): the guardian SIGTERMs its group at once, or Linux sends it the parent-death signal
    (whichever way that was asked for)."""
    root = Path(__file__).resolve().parent.parent
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, mode, str(tmp_path)],
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
    )
    try:
        assert driver.stdout is not None
        agent = psutil.Process(int(driver.stdout.readline()))
        # Popen returns once setpriv runs; it then sets the signal and execs the agent in the
        # same process. Wait for that exec (bounded) before killing the launcher.
        deadline = time.monotonic() + 10
        while agent.cmdline() != ["sleep", "600"] and time.monotonic() < deadline:
            time.sleep(0.01)
        assert agent.cmdline() == ["sleep", "600"]
        assert os.getsid(agent.pid) == agent.pid  # its own session
        driver.kill()
        driver.wait(timeout=10)
        # Not our child, so its exit status is not ours to read: it is enough that it is gone.
        agent.wait(timeout=5)
        assert not agent.is_running()
    finally:
        driver.kill()
        driver.wait(timeout=10)
        if driver.stdout is not None:
            driver.stdout.close()


def test_pids_since_lists_exactly_the_processes_started_after_the_mark() -> None:
    older = subprocess.Popen(["sleep", "30"])
    try:
        mark = proctree.pid_mark()
        assert mark is not None
        newer = subprocess.Popen(["sleep", "30"])
        try:
            pids = proctree.pids_since(mark)
            assert pids is not None
            assert newer.pid in pids
            assert older.pid not in pids
            assert os.getpid() not in pids
        finally:
            newer.kill()
            newer.wait()
    finally:
        older.kill()
        older.wait()


def test_pids_since_looks_up_few_pids_one_by_one_and_skips_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With few pids handed out since the mark they are looked up one by one: the answer is the
    one a listing of /proc gives (``_PROBE_MAX = 0`` forces the listing) for the process started
    since, and a thread started
    since (its id comes from the same counter, and /proc answers for it though it lists only
    processes) is not taken for a process."""
    mark = proctree.pid_mark()
    assert mark is not None
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, args=(30,))
    thread.start()
    newer = subprocess.Popen(["sleep", "30"])
    try:
        assert thread.native_id is not None
        assert thread.native_id > mark.last_pid
        probed = proctree.pids_since(mark)
        monkeypatch.setattr(proctree, "_PROBE_MAX", 0)
        listed = proctree.pids_since(mark)
        assert probed is not None
        assert listed is not None
        assert newer.pid in probed
        assert thread.native_id not in probed
        assert newer.pid in listed
        skipped = proctree.pids_since(mark, {newer.pid})  # a known main process of another attempt
        assert skipped is not None
        assert newer.pid not in skipped
        assert thread.native_id not in listed
    finally:
        stop.set()
        thread.join()
        newer.kill()
        newer.wait()


def test_pids_since_gives_up_whenever_the_counter_cannot_be_trusted() -> None:
    """``None`` (look at every process) without a mark, when pid_max changed, and when enough
    processes were created since that the counter may have gone round; after a wrap it lists the
    pids on both sides of it."""
    mark = proctree.pid_mark()
    assert mark is not None
    assert proctree.pids_since(None) is None
    assert proctree.pids_since(dataclasses.replace(mark, pid_max=mark.pid_max + 1)) is None
    assert proctree.pids_since(dataclasses.replace(mark, forks=mark.forks - mark.pid_max)) is None
    child = subprocess.Popen(["sleep", "30"])
    try:
        # As if the counter had stood just above the child's pid and wrapped round since.
        wrapped = proctree.pids_since(dataclasses.replace(mark, last_pid=child.pid + 1))
        assert wrapped is not None
        assert child.pid in wrapped
        assert 1 in wrapped  # init: a low pid, handed out after the wrap as far as the mark knows
    finally:
        child.kill()
        child.wait()
