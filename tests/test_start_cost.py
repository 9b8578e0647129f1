"""What one ``pagent-run`` pays before and after its tasks (issue 19): a ``--quiet`` run of a plan
that neither publishes nor notifies imports none of structlog, rich, or the hand-off's code, and
still writes its summary and report; without ``--quiet`` the event lines come as before.

Each case runs the console-script entry (``main_run``) in a real Python subprocess, on a one-task
plan whose agent is ``/bin/true`` in a real git repository in ``tmp_path``; an ``atexit`` hook of
that process writes down which modules it loaded and the collector's state.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

PLAN = """\
name = "start"
repo = {repo}

[defaults]
agent = "noop"
isolation = "none"
min_free_memory = "0"
retries = 0

[agents.noop]
command = ["/bin/true"]

[[waves]]
name = "w"
[[waves.tasks]]
id = "t1"
prompt = "nothing"
"""

# Run as the console script does, then record (at exit) the loaded modules and the collector.
DRIVER = """\
import atexit, gc, json, sys
path = sys.argv[1]
def record():
    with open(path, "w") as out:
        json.dump({"modules": sorted(sys.modules), "gc_enabled": gc.isenabled(),
                   "frozen": gc.get_freeze_count()}, out)
atexit.register(record)
sys.argv = ["pagent-run", *sys.argv[2:]]
from supervisor.ui.cli import main_run
main_run()
"""

NOT_IN_A_QUIET_RUN = (
    "structlog",
    "rich",
    "supervisor.engine.publishing",
    "supervisor.handoff.notify",
    "supervisor.handoff.payload",
    "supervisor.handoff.publish",
)


def _run(
    tmp_path: Path, repo: Path, *flags: str
) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    plan = tmp_path / "plan.toml"
    plan.write_text(PLAN.format(repo=json.dumps(str(repo))), encoding="utf-8")
    record = tmp_path / "record.json"
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(record), str(plan), *flags],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        check=False,
    )
    return done, json.loads(record.read_text(encoding="utf-8"))


def test_a_quiet_run_loads_neither_structlog_nor_the_hand_off(tmp_path: Path, repo: Path) -> None:
    done, record = _run(tmp_path, repo, "--quiet")
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    modules = set(record["modules"])  # type: ignore[call-overload]
    loaded = [name for name in NOT_IN_A_QUIET_RUN if name in modules]
    assert loaded == []
    # The run's record is complete all the same.
    (run_dir,) = (tmp_path / ".pagent" / "runs").iterdir()
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    assert summary["status"] == "succeeded"
    assert [task["state"] for task in summary["tasks"]] == ["succeeded"]
    assert (run_dir / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    # The collector is on again for the run, with what was loaded before it frozen.
    assert record["gc_enabled"] is True
    assert isinstance(record["frozen"], int)
    assert record["frozen"] > 10_000


def test_without_quiet_the_event_lines_still_come(tmp_path: Path, repo: Path) -> None:
    done, record = _run(tmp_path, repo)
    assert done.returncode == 0, done.stderr
    assert "structlog" in record["modules"]  # type: ignore[operator]
    assert "run started" in done.stderr
    assert "task succeeded" in done.stderr
