"""``[executor] kind = "ray"`` through the installed ``pagent-run`` and ``pagent``, on a real Ray head.

The head (``tests.ray_head``) listens on 127.0.0.1 with ``agent_slot = 2``; a bare repository in
tmp_path is the plan repository's ``origin`` and the data plane between the supervisor and the
node. Agents are ``tests/agents/rogue.py`` (its prompt lists what it does) and
``tests/agents/worker.py``; every leftover is looked for by the test's own marker in the
environment (``PAGENT_TEST_MARK``, set in the agent's ``env``, which is what the job carries).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import bin_path, git, status_json
from tests.hostile import pagent, run, tasks_by_id, wait_for, write_plan
from tests.ray_head import RayHead, ray_head_fixture  # noqa: F401 - the session fixture

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(300)]

AGENTS = Path(__file__).parent / "agents"


@pytest.fixture(autouse=True)
def _ray_required(ray_head: RayHead) -> None:
    """Every test here needs the head (the fixture skips, naming why, without Ray)."""


@pytest.fixture
def origin(repo: Path, tmp_path: Path) -> Path:
    """A bare clone of ``repo``, set as its ``origin``: what every node fetches from and pushes to."""
    path = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(path))
    git(repo, "remote", "add", "origin", str(path))
    return path


@pytest.fixture
def mark() -> str:
    return uuid.uuid4().hex


def marked(mark: str) -> list[psutil.Process]:
    """Every living process whose environment carries ``PAGENT_TEST_MARK=mark``."""
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE and proc.environ().get("PAGENT_TEST_MARK") == mark:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def ray_plan(
    tmp_path: Path,
    repo: Path,
    head: RayHead,
    tasks: dict[str, dict[str, Any]],
    *,
    mark: str,
    waves: list[list[str]] | None = None,
    defaults: dict[str, Any] | None = None,
    jobs: int = 2,
    executor: dict[str, Any] | None = None,
) -> Path:
    """A plan on ``repo`` whose attempts run as jobs on ``head``."""
    table = {"kind": "ray", "address": head.address, "python": sys.executable, **(executor or {})}
    rogue = {"command": ["{python}", str(AGENTS / "rogue.py")], "env": {"PAGENT_TEST_MARK": mark}}
    return write_plan(
        tmp_path / "plans",
        repo,
        tasks,
        waves=waves,
        defaults={"timeout": "60s", "stall_timeout": "30s", **(defaults or {})},
        top={"jobs": jobs, "executor": table},
        agents={"rogue": rogue},
    )


def branch_file(repo: Path, branch: str, path: str) -> str:
    return git(repo, "show", f"{branch}:{path}")


def test_two_waves_commit_on_their_branches_through_ray(
    tmp_path: Path, repo: Path, origin: Path, ray_head: RayHead, mark: str
) -> None:
    """Wave one: two tasks commit (one of them leaves its work uncommitted); wave two: a task
    stacked on the first. Every commit is on its branch in the plan's repository and pinned,
    and the logs hold the agents' output."""
    tasks = {
        "a": {"prompt": ["write a.txt from a", "commit a's work"]},
        "b": {"prompt": ["write b.txt from b"]},  # auto-committed on the node
        "c": {"prompt": ["write c.txt from c", "commit c's work"], "depends_on": ["a"], "stack": True},
    }
    plan = ray_plan(tmp_path, repo, ray_head, tasks, mark=mark, waves=[["a", "b"], ["c"]])
    done = run(plan, timeout=240)
    assert done.returncode == 0, done.stderr
    view = status_json(plan)
    found = {t["id"]: t for t in view["tasks"]}
    assert {t: found[t]["state"] for t in tasks} == {"a": "succeeded", "b": "succeeded", "c": "succeeded"}
    assert branch_file(repo, found["a"]["branch"], "a.txt") == "from a\n"
    assert branch_file(repo, found["b"]["branch"], "b.txt") == "from b\n"
    message = git(repo, "log", "-1", "--format=%s", found["b"]["branch"]).strip()
    assert message == "pagent: work left uncommitted by b, attempt 1 (ok)"
    # c started from a's branch: both files on it.
    assert branch_file(repo, found["c"]["branch"], "a.txt") == "from a\n"
    assert branch_file(repo, found["c"]["branch"], "c.txt") == "from c\n"
    run_id = view["run_id"]
    for task in tasks:
        pin = git(repo, "rev-parse", f"refs/pagent/{run_id}/{task}/1").strip()
        assert pin == git(repo, "rev-parse", found[task]["branch"]).strip()
        assert found[task]["diff"]["commits"] == 1
        log = Path(found[task]["log"]).read_bytes()
        assert b"rogue done" in log, log
        assert b"PAGENT-" not in log  # the node program's records never reach the log
    assert not marked(mark)
