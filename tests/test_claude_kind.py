"""The claude kind with a stand-in process (no API needed): outcome from the result event."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import bin_path

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

RESULT = {
    "type": "result",
    "subtype": "success",
    "is_error": False,
    "num_turns": 2,
    "total_cost_usd": 0.0123,
    "session_id": "sess-1",
    "duration_ms": 10,
    "duration_api_ms": 5,
    "usage": {"input_tokens": 100, "output_tokens": 20},
    "result": "done",
}
HANGS_AFTER_RESULT = f"""
import json, sys, time
sys.stdin.read()
print(json.dumps({{"type": "system", "subtype": "init", "session_id": "sess-1"}}), flush=True)
print({json.dumps(json.dumps(RESULT))}, flush=True)
time.sleep(3600)
"""
EXITS_ZERO_WITHOUT_RESULT = """
import sys
sys.stdin.read()
print('{"type": "system", "subtype": "init", "session_id": "s"}', flush=True)
print("not json at all", flush=True)
"""


def run_one(tmp_path: Path, repo: Path, script: str) -> tuple[subprocess.CompletedProcess[str], dict, float]:
    agent = tmp_path / "agent.py"
    agent.write_text(script)
    plans = tmp_path / "plans"
    plans.mkdir()
    plan = plans / "plan.toml"
    plan.write_text(
        'repo = "../repo"\n[defaults]\nagent = "cc"\nretries = 0\nkill_grace = "1s"\n'
        f'[agents.cc]\nkind = "claude"\npreflight = false\ncommand = ["{{python}}", "{agent}"]\n'
        '[[waves]]\n[[waves.tasks]]\nid = "t"\nprompt = "x"\n'
    )
    began = time.monotonic()
    done = subprocess.run(
        [bin_path("pagent-run"), str(plan)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    took = time.monotonic() - began
    status = subprocess.run(
        [bin_path("pagent"), "status", str(plan), "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done, json.loads(status.stdout)["tasks"][0], took


def test_result_then_hang_is_stopped_and_keeps_the_result(tmp_path: Path, repo: Path) -> None:
    """A CLI that printed its result but does not exit is stopped after kill_grace; the task
    succeeds with the result's figures."""
    done, task, took = run_one(tmp_path, repo, HANGS_AFTER_RESULT)
    assert done.returncode == 0, done.stderr
    assert (task["state"], task["reason"]) == ("succeeded", "ok")
    assert (task["session_id"], task["turns"], task["cost_usd"]) == ("sess-1", 2, 0.0123)
    assert took < 15


def test_exit_zero_without_a_result_is_a_failure(tmp_path: Path, repo: Path) -> None:
    """Exit 0 is not success for a claude-kind agent: no result event means reason no-result."""
    done, task, _ = run_one(tmp_path, repo, EXITS_ZERO_WITHOUT_RESULT)
    assert done.returncode == 1
    assert (task["state"], task["reason"], task["exit_code"]) == ("failed", "no-result", 0)
