"""End to end: the installed ``pagent-run`` and ``pagent`` on a real git repository."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bin_path, cli, git, status_json

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

AGENT = Path(__file__).parent / "agents" / "scripted.py"


def write_plan(plans: Path, repo: Path, waves: dict[str, dict[str, str]], retries: int = 2) -> Path:
    """A plan whose tasks run ``tests/agents/scripted.py`` with the given prompts."""
    plans.mkdir(exist_ok=True)
    lines = [
        f'repo = "{os.path.relpath(repo, plans)}"',
        "jobs = 2",
        '[defaults]\nagent = "fake"',
        f'retries = {retries}\nretry_delay = "0.1s"\ntimeout = "1m"',
        '[agents.fake]\ncommand = ["{python}", "' + str(AGENT) + '"]',
        'env = { JOURNAL = "{plan_dir}/journal.jsonl", PLAN_DIR = "{plan_dir}" }',
    ]
    for wave, tasks in waves.items():
        lines.append(f'[[waves]]\nname = "{wave}"')
        for task_id, prompt in tasks.items():
            lines.append(f'[[waves.tasks]]\nid = "{task_id}"\nprompt = """{prompt}"""')
    path = plans / "plan.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def journal(plan: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (plan.parent / "journal.jsonl").read_text().splitlines()]


def max_overlap(entries: list[dict[str, Any]]) -> int:
    """The most agents that were running at the same moment, from start/end journal lines."""
    points = sorted((e["t"], 1 if e["event"] == "start" else -1) for e in entries)
    running = peak = 0
    for _, delta in sorted(points, key=lambda p: (p[0], p[1])):
        running += delta
        peak = max(peak, running)
    return peak


def test_two_waves_retries_failure_and_retry_failed(tmp_path: Path, repo: Path) -> None:
    """The core issue's whole story, on the installed CLI, as a new user would see it."""
    head_before = git(repo, "rev-parse", "HEAD").strip()
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {
            "one": {
                "a": "wait-for-peers 2",
                "b": "wait-for-peers 2",
                "flaky": "fail-until 3",
            },
            "two": {"needs-fix": "fail-unless fixed.flag", "c": "plain"},
            "three": {"last": "plain"},
        },
    )

    first = cli(bin_path("pagent-run"), plan)
    assert first.returncode == 1, first.stderr
    assert "Traceback" not in first.stderr

    view = status_json(plan)
    tasks = {t["id"]: t for t in view["tasks"]}
    assert {k: (t["state"], t["attempts"]) for k, t in tasks.items()} == {
        "a": ("succeeded", 1),
        "b": ("succeeded", 1),
        "flaky": ("succeeded", 3),
        "needs-fix": ("failed", 3),
        "c": ("succeeded", 1),
        "last": ("not_run", 0),
    }
    assert tasks["needs-fix"]["reason"] == "exit 1"
    assert tasks["needs-fix"]["exit_code"] == 1

    entries = journal(plan)
    assert max_overlap(entries) == 2  # jobs = 2: reached, never exceeded
    wave_one_end = max(e["t"] for e in entries if e["task"] in {"a", "b", "flaky"})
    wave_two_start = min(e["t"] for e in entries if e["task"] in {"needs-fix", "c"})
    assert wave_one_end <= wave_two_start

    # Each succeeded task's commit is on its own branch; the main worktree is untouched.
    for task_id in ("a", "b", "flaky", "c"):
        branch = tasks[task_id]["branch"]
        assert git(repo, "show", f"{branch}:result/{task_id}.txt").startswith(f"{task_id} done")
        assert git(repo, "rev-list", "--count", f"{head_before}..{branch}").strip() == "1"
    assert git(repo, "rev-parse", "HEAD").strip() == head_before
    assert git(repo, "status", "--porcelain") == ""
    assert not (repo / "result").exists()

    # pagent logs shows an attempt's stdout and stderr.
    logs = cli(bin_path("pagent"), "logs", plan, "flaky", "--attempt", "1")
    assert logs.returncode == 0
    assert "agent flaky attempt 1 on stdout" in logs.stdout
    assert "agent flaky attempt 1 on stderr" in logs.stdout
    assert "failing on purpose" in logs.stdout
    latest = cli(bin_path("pagent"), "logs", plan, "flaky")
    assert "attempt 3 on stdout" in latest.stdout

    # Fix the cause; --retry-failed runs only the failed and the never-run tasks.
    (plan.parent / "fixed.flag").write_text("")
    before = len(entries)
    second = cli(bin_path("pagent-run"), plan, "--retry-failed")
    assert second.returncode == 0, second.stderr
    rerun = [e["task"] for e in journal(plan)[before:] if e["event"] == "start"]
    assert sorted(rerun) == ["last", "needs-fix"]
    final = {t["id"]: (t["state"], t["attempts"]) for t in status_json(plan)["tasks"]}
    assert final["needs-fix"] == ("succeeded", 4)
    assert final["last"] == ("succeeded", 1)
    assert status_json(plan)["run_id"] == view["run_id"]


def test_logs_are_raw_bytes_with_long_lines_and_invalid_utf8(tmp_path: Path, repo: Path) -> None:
    """An attempt's log holds exactly the bytes the agent wrote, even a 1 MB line of non-UTF-8."""
    agent = tmp_path / "bytes_agent.py"
    agent.write_text(
        "import sys\n"
        "sys.stdin.read()\n"
        "sys.stdout.buffer.write(b'\\xff\\xfe' * 500_000 + b'\\n')\n"
        "sys.stdout.buffer.write(b'no newline at the end')\n"
    )
    plans = tmp_path / "plans"
    plans.mkdir()
    plan = plans / "plan.toml"
    plan.write_text(
        f'repo = "../repo"\n[defaults]\nagent = "raw"\nretries = 0\n'
        f'[agents.raw]\ncommand = ["{{python}}", "{agent}"]\n'
        '[[waves]]\n[[waves.tasks]]\nid = "raw"\nprompt = "x"\n'
    )
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 0, done.stderr
    log = subprocess.run(
        [bin_path("pagent"), "logs", plan, "raw"], capture_output=True, timeout=30, check=True
    ).stdout
    assert log == b"\xff\xfe" * 500_000 + b"\n" + b"no newline at the end"


@pytest.mark.parametrize("flag", ["--retry-failed", "--dry-run"])
def test_commands_on_a_plan_that_never_ran(tmp_path: Path, repo: Path, flag: str) -> None:
    """--retry-failed without an earlier run is a usage error (2); --dry-run just describes."""
    plan = write_plan(tmp_path / "plans", repo, {"one": {"a": "plain"}})
    done = cli(bin_path("pagent-run"), plan, flag)
    if flag == "--dry-run":
        assert done.returncode == 0
        assert "a: agent fake" in done.stdout
    else:
        assert done.returncode == 2
        assert done.stderr.strip() == "pagent: plan.toml: no run yet"
