"""The README's "Guarantees" on the installed CLI, where the hostile tests only check that
nothing crashed: what each command says and leaves when the state is corrupt, read-only or on
a full disk, and when an agent replaces the run's directory.

Real repositories, the rogue agent, a real 1 MiB tmpfs and a real read-only bind mount where
this machine lets the test mount them (root); elsewhere those tests are skipped, saying why.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import git, status_json
from tests.hostile import one_line_error, pagent, run, write_plan
from tests.test_hostile_disk import NOISY, read_only, small_disk

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

__all__ = ["read_only", "small_disk"]  # fixtures


def test_a_corrupt_state_db_stops_pagent_run_with_exit_2_and_creates_nothing(
    tmp_path: Path, repo: Path
) -> None:
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    state = plan.parent / ".pagent"
    state.mkdir()
    (state / "state.db").write_bytes(b"not sqlite at all\n" * 50)
    done = run(plan)
    assert done.returncode == 2
    assert one_line_error(done), done.stderr
    assert "state.db is not a usable pagent database" in done.stderr
    assert "move it aside" in done.stderr
    assert git(repo, "branch", "--list", "pagent/*") == ""
    assert not (state / "runs").exists()


def test_a_read_only_plan_directory_still_shows_the_morning(
    tmp_path: Path, repo: Path, read_only: Callable[[Path], None]
) -> None:
    """status, runs and logs work as before; report shows the report the run wrote (and says it
    could not rewrite it); pagent-run says in one line why it cannot start (exit 2)."""
    hello = b"hello-from-a\n".hex()
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": f"print-hex {hello}\nwrite a.txt a"}})
    assert run(plan).returncode == 0
    run_id = status_json(plan)["run_id"]
    report_path = plan.parent / ".pagent" / "runs" / run_id / "report.html"
    assert report_path.is_file()
    read_only(plan.parent)

    assert status_json(plan)["tasks"][0]["state"] == "succeeded"
    runs = pagent("runs", plan, "--json")
    assert runs.returncode == 0
    assert [r["run_id"] for r in json.loads(runs.stdout)] == [run_id]
    logs = pagent("logs", plan, "a")
    assert logs.returncode == 0
    assert "hello-from-a" in logs.stdout
    report = pagent("report", plan)
    assert report.returncode == 0
    assert report.stdout.strip() == str(report_path)
    assert "cannot write" in report.stderr
    assert "warning" in report.stderr

    again = run(plan)
    assert again.returncode == 2
    assert one_line_error(again), again.stderr
    assert "Read-only file system" in again.stderr
    assert [r["run_id"] for r in json.loads(pagent("runs", plan, "--json").stdout)] == [run_id]


def test_a_full_disk_fails_the_noisy_task_with_disk_full_and_the_run_ends_recorded(
    tmp_path: Path, repo: Path, small_disk: Callable[[Path, str], Path]
) -> None:
    """The state's disk (1 MiB) fills with one agent's output: that attempt is stopped and fails
    disk-full (not retried), the other task succeeds, the run's records, summary and report are
    written -- without the test freeing any space -- and the reserve is gone."""
    plans = small_disk(tmp_path / "plans", "1m")
    noisy = tmp_path / "noisy.py"
    noisy.write_text(NOISY)
    plan = write_plan(
        plans,
        repo,
        {"a": {"agent": "noisy", "retries": 2}, "b": {"prompt": "sleep 0.5\nwrite b.txt b"}},
        agents={"noisy": {"command": ["{python}", str(noisy)]}},
    )
    done = run(plan)
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr
    view = status_json(plan)
    tasks = {t["id"]: t for t in view["tasks"]}
    assert (tasks["a"]["state"], tasks["a"]["reason"], tasks["a"]["attempts"]) == ("failed", "disk-full", 1)
    assert tasks["a"]["detail"]["log_dropped_bytes"] > 0
    assert tasks["b"]["state"] == "succeeded"
    assert view["status"] == "failed"
    run_dir = plans / ".pagent" / "runs" / view["run_id"]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {t["id"]: t["state"] for t in summary["tasks"]} == {"a": "failed", "b": "succeeded"}
    assert (run_dir / "report.html").is_file()
    assert not (plans / ".pagent" / ".reserve").exists()
    assert "a (disk-full)" in done.stdout


def test_an_agent_replacing_the_run_directory_fails_its_task_with_io_error(
    tmp_path: Path, repo: Path
) -> None:
    """The agent turns ``.pagent/runs`` into a file and fails; its retry cannot write its prompt:
    the task fails with io-error naming the path, the other task's outcome stands, the summary
    that cannot be written is said in one notice, the records are complete."""
    runs = tmp_path / "plans" / ".pagent" / "runs"
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": {"prompt": f"to-file {runs}\nexit 1", "retries": 1}, "b": {"prompt": "write b.txt b"}},
        waves=[["b"], ["a"]],
    )
    done = run(plan)
    assert done.returncode == 1, done.stderr
    assert "internal error" not in done.stderr
    tasks = {t["id"]: t for t in status_json(plan)["tasks"]}
    assert tasks["b"]["state"] == "succeeded"
    assert tasks["a"]["state"] == "failed"
    assert tasks["a"]["reason"].startswith("io-error: ")
    assert "runs" in tasks["a"]["reason"]
    assert "summary.json" in done.stderr
    assert "run " in done.stdout  # the summary still reaches stdout
