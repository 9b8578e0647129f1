"""Unattended operation: the lock, repeated runs, cron's environment, history, retention, clean."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import GIT_IDENTITY, bin_path, cli, git, status_json

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

HOLD_AGENT = """
import os, pathlib, sys, time
sys.stdin.read()
plan_dir = pathlib.Path(os.environ["PLAN_DIR"])
with open(plan_dir / "journal.txt", "a") as f:
    f.write(os.environ["PAGENT_TASK_ID"] + "\\n")
(plan_dir / "started").write_text(str(os.getpid()))
deadline = time.monotonic() + 60
while not (plan_dir / "release").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
pathlib.Path("out-" + os.environ["PAGENT_TASK_ID"] + ".txt").write_text(os.environ["PAGENT_RUN_ID"])
os.system("git add -A && git commit -q -m work")
"""


def make_plan(tmp_path: Path, repo: Path, tasks: int = 1, extra: str = "", hold: bool = False) -> Path:
    plans = tmp_path / "plans"
    plans.mkdir(exist_ok=True)
    agent = plans / "agent.py"
    agent.write_text(HOLD_AGENT if hold else HOLD_AGENT.replace("deadline = time", "deadline = 0 and time"))
    (plans / "release").unlink(missing_ok=True)
    if not hold:
        (plans / "release").write_text("")
    body = [
        f'repo = "../repo"\n{extra}',
        '[defaults]\nagent = "a"\nretries = 0',
        '[agents.a]\ncommand = ["{python}", "{plan_dir}/agent.py"]\nenv = { PLAN_DIR = "{plan_dir}" }',
        "[[waves]]",
    ]
    body += [f'[[waves.tasks]]\nid = "t{i}"\nprompt = "task {i}"' for i in range(tasks)]
    plan = plans / "plan.toml"
    plan.write_text("\n".join(body) + "\n")
    return plan


def wait_for(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_a_second_run_of_an_active_plan_exits_75_and_starts_nothing(tmp_path: Path, repo: Path) -> None:
    """While a run holds the plan, another pagent-run exits 75 at once, naming the holder."""
    plan = make_plan(tmp_path, repo, hold=True)
    first = subprocess.Popen(
        [bin_path("pagent-run"), plan, "-q"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    try:
        wait_for(plan.parent / "started")
        began = time.monotonic()
        second = cli(bin_path("pagent-run"), plan)
        took = time.monotonic() - began
        assert second.returncode == 75
        assert took < 5
        assert f"pid {first.pid}" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1
        # Read-only commands work meanwhile.
        assert status_json(plan)["tasks"][0]["state"] == "running"
        assert cli(bin_path("pagent"), "runs", plan).returncode == 0
        assert cli(bin_path("pagent"), "clean", plan).returncode == 75
    finally:
        (plan.parent / "release").write_text("")
        first.communicate(timeout=60)
    assert first.returncode == 0
    assert (plan.parent / "journal.txt").read_text().splitlines() == ["t0"]


def test_a_stale_lock_file_does_not_block(tmp_path: Path, repo: Path) -> None:
    """A lock file left by a dead run (no process holds it) is simply taken over."""
    plan = make_plan(tmp_path, repo)
    lock = plan.parent / ".pagent" / "locks" / "plan.toml.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": 999999, "started": "yesterday"}))
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 0, done.stderr


def test_cron_environment_plain_output_and_summary_json(tmp_path: Path, repo: Path) -> None:
    """Under env -i, no TTY, stdin /dev/null and output to a file: exit 0, no escape sequence."""
    plan = make_plan(tmp_path, repo, tasks=2)
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": f"{bin_path('pagent-run').parent}:/usr/bin:/bin", "HOME": str(home), **GIT_IDENTITY}
    out = tmp_path / "cron.out"
    with out.open("wb") as f:
        done = subprocess.run(
            ["env", "-i", *[f"{k}={v}" for k, v in env.items()], "pagent-run", str(plan)],
            stdin=subprocess.DEVNULL,
            stdout=f,
            stderr=subprocess.STDOUT,
            timeout=60,
            check=False,
        )
    text = out.read_bytes()
    assert done.returncode == 0, text
    assert b"\x1b" not in text
    assert b"task succeeded" in text
    view = status_json(plan)
    summary = json.loads((plan.parent / ".pagent" / "runs" / view["run_id"] / "summary.json").read_text())
    assert summary["counts"] == {"succeeded": 2}
    assert summary["run_id"] == view["run_id"]


def test_quiet_prints_only_the_summary(tmp_path: Path, repo: Path) -> None:
    """--quiet: nothing but the final summary (cron mails whatever is printed)."""
    plan = make_plan(tmp_path, repo)
    done = cli(bin_path("pagent-run"), plan, "--quiet")
    assert done.returncode == 0
    assert done.stderr == ""
    assert done.stdout.startswith("run ")
    assert "succeeded" in done.stdout.splitlines()[0]


def test_json_log_format_is_one_json_object_per_line(tmp_path: Path, repo: Path) -> None:
    """--log-format json: every event line on stderr is a JSON object."""
    plan = make_plan(tmp_path, repo)
    done = cli(bin_path("pagent-run"), plan, "--log-format", "json")
    assert done.returncode == 0
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert {"run started", "task started", "task succeeded"} <= {line["event"] for line in lines}


def test_successive_runs_keep_every_commit_and_history(tmp_path: Path, repo: Path) -> None:
    """Two runs of one plan: new run id, both runs' commits on branches, history per run."""
    plan = make_plan(tmp_path, repo)
    assert cli(bin_path("pagent-run"), plan).returncode == 0
    first = status_json(plan)
    assert cli(bin_path("pagent-run"), plan).returncode == 0
    second = status_json(plan)
    assert second["run_id"] != first["run_id"]
    assert second["run_id"] > first["run_id"]  # sortable
    b1, b2 = first["tasks"][0]["branch"], second["tasks"][0]["branch"]
    assert b1 != b2
    assert git(repo, "show", f"{b1}:out-t0.txt") == first["run_id"]
    assert git(repo, "show", f"{b2}:out-t0.txt") == second["run_id"]
    runs = json.loads(cli(bin_path("pagent"), "runs", plan, "--json").stdout)
    assert [r["run_id"] for r in runs] == [first["run_id"], second["run_id"]]
    assert status_json(plan, "--run", first["run_id"])["tasks"][0]["branch"] == b1
    log = cli(bin_path("pagent"), "logs", plan, "t0", "--run", first["run_id"])
    assert log.returncode == 0
    unknown = cli(bin_path("pagent"), "status", plan, "--run", "nope")
    assert unknown.returncode == 2
    assert unknown.stderr.startswith("pagent: plan.toml: no run 'nope'")


def test_keep_runs_forgets_old_runs_but_keeps_their_branches(tmp_path: Path, repo: Path) -> None:
    """keep_runs = 1: after two runs only the newest is listed; the first run's branch remains."""
    plan = make_plan(tmp_path, repo, extra="keep_runs = 1")
    assert cli(bin_path("pagent-run"), plan).returncode == 0
    first = status_json(plan)
    assert cli(bin_path("pagent-run"), plan).returncode == 0
    runs = json.loads(cli(bin_path("pagent"), "runs", plan, "--json").stdout)
    assert [r["run_id"] for r in runs] == [status_json(plan)["run_id"]]
    assert not (plan.parent / ".pagent" / "runs" / first["run_id"]).exists()
    assert git(repo, "show", f"{first['tasks'][0]['branch']}:out-t0.txt") == first["run_id"]


def test_clean_refuses_dirty_worktrees_and_force_removes_all(tmp_path: Path, repo: Path) -> None:
    """clean refuses (and removes nothing) while a worktree is dirty; --force removes every one."""
    plan = make_plan(tmp_path, repo, tasks=2)
    assert cli(bin_path("pagent-run"), plan).returncode == 0
    view = status_json(plan)
    worktrees = [Path(t["worktree"]) for t in view["tasks"]]
    dirty = worktrees[0] / "scratch.txt"
    dirty.write_text("not committed")

    refused = cli(bin_path("pagent"), "clean", plan)
    assert refused.returncode == 1
    assert f"{worktrees[0]}: uncommitted changes: scratch.txt" in refused.stderr
    assert all(w.exists() for w in worktrees)
    assert dirty.exists()

    forced = cli(bin_path("pagent"), "clean", plan, "--force")
    assert forced.returncode == 0, forced.stderr
    assert not any(w.exists() for w in worktrees)
    assert str(worktrees[0]) not in git(repo, "worktree", "list")
    for task in view["tasks"]:
        assert git(repo, "show", f"{task['branch']}:out-{task['id']}.txt") == view["run_id"]


def test_progress_view_on_a_terminal(tmp_path: Path, repo: Path) -> None:
    """On a terminal the run shows a live view with counts; a file gets plain lines instead."""
    plan = make_plan(tmp_path, repo)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [bin_path("pagent-run"), plan],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "120", "TERM": "xterm"},
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    proc.wait(timeout=30)
    os.close(leader)
    screen = b"".join(chunks)
    assert proc.returncode == 0
    assert b"done, 0 failed" in screen
    assert b"\x1b[" in screen  # a terminal gets colours and redraws


def test_dry_run_creates_nothing_and_runs_no_agent(tmp_path: Path, repo: Path) -> None:
    """--dry-run describes the plan; no state, worktree, branch or agent comes of it."""
    plan = make_plan(tmp_path, repo)
    branches = git(repo, "branch", "--list")
    done = cli(bin_path("pagent-run"), plan, "--dry-run")
    assert done.returncode == 0
    assert "t0" in done.stdout
    assert not (plan.parent / ".pagent").exists()
    assert not (plan.parent / "journal.txt").exists()
    assert git(repo, "branch", "--list") == branches
