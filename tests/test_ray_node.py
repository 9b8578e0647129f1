"""The node program of Ray attempts, run directly as a subprocess: no Ray needed.

A bare repository in tmp_path is the remote; each test starts ``python -m
supervisor.launch.ray_node SPEC`` with its output in a file (as Ray's job log is), then reads
the remote and the result record. Leftovers are looked for in two ways: the pids the hostile
agent's leftovers wrote, and every process on the machine carrying the test's marker in its
environment.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from supervisor.launch.node_spec import NodeSpec, RecordSplitter, encode_spec
from tests.conftest import git

pytestmark = [pytest.mark.slow, pytest.mark.ray]

AGENTS = Path(__file__).parent / "agents"
NONCE = "5eed5eed5eed5eed"


@pytest.fixture
def remote(repo: Path, tmp_path: Path) -> Path:
    """A bare clone of ``repo`` (one commit on main): what every node pushes to."""
    path = tmp_path / "remote.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(path))
    return path


def make_spec(remote: Path, tmp_path: Path, argv: list[str], **extra: Any) -> NodeSpec:
    """A spec for task ``t1`` of run ``r1`` starting at the remote's main."""
    values: dict[str, Any] = {
        "plan_uid": "0123abcd4567",
        "run_id": "r1",
        "task_id": "t1",
        "attempt": 1,
        "remote": str(remote),
        "branch": "pagent/p/t1",
        "start_commit": git(remote, "rev-parse", "main").strip(),
        "argv": tuple(argv),
        "prompt": "do the task\n",
        "nonce": NONCE,
        "cache_dir": str(tmp_path / "cache"),
        "kill_grace": 1.0,
        "sample_interval": 0,
        "env": {"PAGENT_TEST_MARK": extra.pop("mark", "none")},
    }
    values.update(extra)
    return NodeSpec(**values)


def start(spec: NodeSpec, log: Path) -> subprocess.Popen[bytes]:
    """The node program on ``spec``, its stdout and stderr going to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "supervisor.launch.ray_node", *encode_spec(spec)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).parent.parent,
        )


def result_of(log: Path) -> tuple[bytes, list[tuple[str, dict[str, Any]]]]:
    """The agent's bytes and the records in ``log``."""
    splitter = RecordSplitter(NONCE)
    agent, records = splitter.feed(log.read_bytes())
    return agent + splitter.flush(), records


def final(log: Path) -> dict[str, Any]:
    """The one result record, which must be the log's last line."""
    data = log.read_bytes()
    last_line = data.rstrip(b"\n").rsplit(b"\n", 1)[-1]
    assert last_line.startswith(f"PAGENT-RESULT[{NONCE}] ".encode()), data[-500:]
    results = [payload for kind, payload in result_of(log)[1] if kind == "RESULT"]
    assert len(results) == 1, results
    return results[0]


def run_node(spec: NodeSpec, log: Path, timeout: float = 60) -> tuple[int, dict[str, Any]]:
    """Run the node program to its end: its exit code and result record."""
    proc = start(spec, log)
    code = proc.wait(timeout=timeout)
    return code, final(log)


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    """Poll ``predicate`` every 20 ms until true; fail naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


def marked(mark: str) -> list[psutil.Process]:
    """Every living process whose environment carries ``PAGENT_TEST_MARK=mark``, except Ray's own
    watcher of a job: its JobSupervisor starts ``sh -c 'while kill -s 0 PID; do sleep 1; done;
    kill -9 -PGID'`` with the job's runtime environment (so with the mark), which ends at most a
    second after the job's supervisor actor and is not the agent's (measured: a ``sleep 1``
    adopted by init, seen right after a run once in four). Shared by the Ray test modules: jobs
    run through Ray in ``test_ray_jobs`` and ``test_ray_e2e``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() == psutil.STATUS_ZOMBIE or proc.environ().get("PAGENT_TEST_MARK") != mark:
                continue
            if _ray_watcher(proc.cmdline()):
                continue
            found.append(proc)
        except psutil.Error:
            continue
    return found


def _ray_watcher(argv: list[str]) -> bool:
    """Whether ``argv`` is Ray's job watcher or the ``sleep 1`` of its loop."""
    if argv == ["sleep", "1"]:
        return True
    return len(argv) == 3 and argv[1] == "-c" and argv[2].startswith("while kill -s 0 ")


def leftover_pids(pid_dir: Path) -> dict[str, int]:
    return {name: int((pid_dir / f"{name}.pid").read_text()) for name in ("setsid", "orphan")}


def assert_none_survive(pid_dir: Path, mark: str) -> None:
    """Neither leftover nor any process with the test's mark is alive (bounded wait)."""
    pids = leftover_pids(pid_dir)
    for name, pid in pids.items():
        wait_for(lambda pid=pid: not psutil.pid_exists(pid), 5, f"the {name} leftover {pid} to go")
    wait_for(lambda: not marked(mark), 5, "every marked process to go")


def test_hostile_agent_leaves_nothing_behind_and_its_exit_code_passes_through(
    remote: Path, tmp_path: Path
) -> None:
    """An agent that leaves a setsid daemon ignoring SIGTERM and a double-forked orphan, then
    exits 3: both leftovers are killed, the node exits 3, and the work is auto-committed."""
    pid_dir, mark = tmp_path / "pids", uuid.uuid4().hex
    pid_dir.mkdir()
    argv = [sys.executable, str(AGENTS / "hostile_tree.py"), str(pid_dir), "exit:3"]
    code, result = run_node(make_spec(remote, tmp_path, argv, mark=mark), tmp_path / "log")
    assert code == 3
    assert result["exit_code"] == 3
    assert result["signal"] is None
    assert result["stopped"] is None
    assert result["leftovers"] == 2
    assert result["auto_committed"] is True
    assert result["pushed_branch"]
    assert result["pushed_pin"]
    assert_none_survive(pid_dir, mark)
    message = git(remote, "log", "-1", "--format=%s", "pagent/p/t1").strip()
    assert message == "pagent: work left uncommitted by t1, attempt 1 (exit 3)"
    assert b"hostile: ready\n" in result_of(tmp_path / "log")[0]


def test_sigterm_stops_the_whole_tree_and_still_saves_the_work(remote: Path, tmp_path: Path) -> None:
    """SIGTERM to the node program (what Ray's stop_job sends) while the agent ignores SIGTERM:
    the tree is gone within kill_grace plus a margin, the work is pushed, the stop recorded."""
    pid_dir, mark = tmp_path / "pids", uuid.uuid4().hex
    pid_dir.mkdir()
    argv = [sys.executable, str(AGENTS / "hostile_tree.py"), str(pid_dir), "hang"]
    log = tmp_path / "log"
    proc = start(make_spec(remote, tmp_path, argv, mark=mark), log)
    wait_for(lambda: b"hostile: ready" in log.read_bytes(), 20, "the agent to be ready")
    sent = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    took = time.monotonic() - sent
    result = final(log)
    assert code == 128 + signal.SIGKILL  # the agent ignored SIGTERM: SIGKILL after the grace
    assert result["stopped"] == "SIGTERM"
    assert result["signal"] == signal.SIGKILL
    assert result["leftovers"] == 2
    assert 1.0 <= took < 6, took
    assert_none_survive(pid_dir, mark)
    assert git(remote, "show", "pagent/p/t1:work.txt") == "left uncommitted\n"
    message = git(remote, "log", "-1", "--format=%s", "refs/pagent/r1/t1/1").strip()
    assert message.endswith("(stopped)")


def test_killing_the_node_programs_first_process_stops_the_attempt(remote: Path, tmp_path: Path) -> None:
    """SIGKILL of the process Ray started (as the head's death does to the job's group): the
    worker in its own session sees its parent die and stops the tree like after a stop."""
    pid_dir, mark = tmp_path / "pids", uuid.uuid4().hex
    pid_dir.mkdir()
    argv = [sys.executable, str(AGENTS / "hostile_tree.py"), str(pid_dir), "hang"]
    log = tmp_path / "log"
    proc = start(make_spec(remote, tmp_path, argv, mark=mark), log)
    wait_for(lambda: b"hostile: ready" in log.read_bytes(), 20, "the agent to be ready")
    proc.kill()
    proc.wait(timeout=5)
    wait_for(lambda: b"PAGENT-RESULT" in log.read_bytes(), 20, "the worker's result record")
    assert final(log)["stopped"] == "parent-died"
    assert_none_survive(pid_dir, mark)


def test_marker_and_pinned_ref_arrive(remote: Path, tmp_path: Path) -> None:
    """The agent commits and creates the done marker: the marker is seen and never committed,
    branch and pin reach the remote. (Verify has a mode of its own: ``test_ray_node_modes``.)"""
    script = (
        "import os, subprocess, sys;"
        "os.makedirs('sub', exist_ok=True); open('sub/a.txt', 'w').write(sys.stdin.read());"
        "subprocess.run(['git', 'add', 'sub'], check=True);"
        "subprocess.run(['git', 'commit', '-qm', 'agent commit'], check=True);"
        "open('.task-complete', 'w').close(); print('agent done')"
    )
    spec = make_spec(remote, tmp_path, [sys.executable, "-c", script], done_marker=".task-complete")
    code, result = run_node(spec, tmp_path / "log")
    assert code == 0
    assert result["marker"] is True
    assert result["auto_committed"] is False
    assert result["dirty"] is False
    assert b"agent done\n" in result_of(tmp_path / "log")[0]
    head = git(remote, "rev-parse", "pagent/p/t1").strip()
    assert head == git(remote, "rev-parse", "refs/pagent/r1/t1/1").strip() == result["head"]
    assert git(remote, "show", "pagent/p/t1:sub/a.txt") == "do the task\n"
    assert ".task-complete" not in git(remote, "ls-tree", "-r", "--name-only", "pagent/p/t1")


def test_a_retry_continues_on_the_same_branch(remote: Path, tmp_path: Path) -> None:
    """Attempt 2 starts from what attempt 1 pushed (in the cached workspace and on the remote)."""
    first = [sys.executable, "-c", "open('one.txt', 'w').write('1')"]
    check = "import os, sys; open('two.txt', 'w').write('2'); sys.exit(0 if os.path.exists('one.txt') else 9)"
    second = [sys.executable, "-c", check]
    code, one = run_node(make_spec(remote, tmp_path, first), tmp_path / "log1")
    assert code == 0
    assert one["continued"] is False
    code, two = run_node(make_spec(remote, tmp_path, second, attempt=2), tmp_path / "log2")
    assert code == 0
    assert two["continued"] is True
    assert two["tip_before"] == one["head"]
    files = git(remote, "ls-tree", "-r", "--name-only", "pagent/p/t1").split()
    assert {"one.txt", "two.txt"} <= set(files)
    assert git(remote, "rev-parse", "refs/pagent/r1/t1/1").strip() == one["head"]
    assert git(remote, "rev-parse", "pagent/p/t1~1").strip() == one["head"]


def test_rewritten_history_is_forced_only_on_pagents_own_branch(remote: Path, tmp_path: Path) -> None:
    """An agent that amends the previous attempt's commit: without force_push the branch push is
    rejected but the pin lands; with it the branch is replaced (with a lease)."""
    base = [sys.executable, "-c", "open('one.txt', 'w').write('1')"]
    run_node(make_spec(remote, tmp_path, base), tmp_path / "log1")
    amend = (
        "import subprocess; open('one.txt', 'w').write('amended');"
        "subprocess.run(['git', 'commit', '-qa', '--amend', '-m', 'rewritten'], check=True)"
    )
    argv = [sys.executable, "-c", amend]
    _, kept = run_node(make_spec(remote, tmp_path, argv, attempt=2), tmp_path / "log2")
    assert kept["rewritten"] is True
    assert kept["pushed_branch"] is False
    assert kept["pushed_pin"] is True
    assert "rejected" in kept["error"]
    assert kept["phase"] == "push"
    assert git(remote, "show", "pagent/p/t1:one.txt") == "1"
    _, forced = run_node(make_spec(remote, tmp_path, argv, attempt=3, force_push=True), tmp_path / "log3")
    assert forced["pushed_branch"] is True
    assert forced["forced"] is True
    assert forced["error"] is None
    assert git(remote, "show", "pagent/p/t1:one.txt") == "amended"
    assert git(remote, "show", "refs/pagent/r1/t1/1:one.txt") == "1"  # the old work stays pinned


def test_samples_and_records_leave_the_agents_bytes_unchanged(remote: Path, tmp_path: Path) -> None:
    """An agent printing invalid UTF-8 and lines without an end: samples land between its bytes,
    and splitting the log in any chunk size gives back exactly the agent's bytes."""
    script = (
        "import sys, time\n"
        "for i in range(8):\n"
        "    sys.stdout.buffer.write(b'part %d \\xff\\xfe PAGENT-SAMPLE[' % i); sys.stdout.flush()\n"
        "    time.sleep(0.1)\n"
    )
    spec = make_spec(remote, tmp_path, [sys.executable, "-c", script], sample_interval=0.2)
    code, _ = run_node(spec, tmp_path / "log")
    assert code == 0
    expected = b"".join(b"part %d \xff\xfe PAGENT-SAMPLE[" % i for i in range(8))
    data = (tmp_path / "log").read_bytes()
    for size in (1, 7, 64, len(data)):
        splitter = RecordSplitter(NONCE)
        agent, kinds = b"", []
        for i in range(0, len(data), size):
            out, records = splitter.feed(data[i : i + size])
            agent += out
            kinds += [kind for kind, _ in records]
        agent += splitter.flush()
        assert agent == expected, size
        assert kinds.count("RESULT") == 1, kinds
        assert kinds.count("SAMPLE") >= 2, kinds


def test_bad_spec_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """A spec that is not JSON, or lacks a field: exit 2, one line on stderr, no traceback."""
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "plan_uid": "x"}))
    for arg in ("!!!not-base64!!!", str(bad)):
        done = subprocess.run(
            [sys.executable, "-m", "supervisor.launch.ray_node", arg],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            cwd=Path(__file__).parent.parent,
        )
        assert done.returncode == 2, done
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        assert "bad spec" in done.stderr


def test_unreachable_remote_fails_setup_with_exit_3(remote: Path, tmp_path: Path) -> None:
    """A remote that does not exist: exit 3 and a result naming the setup phase; no agent runs."""
    spec = make_spec(remote, tmp_path, ["touch", str(tmp_path / "ran")])
    spec = dataclasses.replace(spec, remote=str(tmp_path / "missing.git"))
    code, result = run_node(spec, tmp_path / "log")
    assert code == 3
    assert result["phase"] == "setup"
    assert "git ls-remote" in result["error"]
    assert not (tmp_path / "ran").exists()


def test_a_job_that_starts_after_not_after_runs_nothing(remote: Path, tmp_path: Path) -> None:
    """Ray runs a stopped PENDING job once a slot frees: past its not_after it must do nothing."""
    spec = make_spec(remote, tmp_path, ["touch", str(tmp_path / "ran")], not_after=time.time() - 1)
    code, result = run_node(spec, tmp_path / "log")
    assert code == 3
    assert "not_after" in result["error"]
    assert not (tmp_path / "ran").exists()
    assert git(remote, "for-each-ref", "refs/pagent") == ""
