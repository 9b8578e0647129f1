"""``[executor] kind = "ray"`` through the installed ``pagent-run`` and ``pagent``, on a real Ray head.

The head (``tests.ray_head``) listens on 127.0.0.1 with ``agent_slot = 2``; a bare repository in
tmp_path is the plan repository's ``origin`` and the data plane between the supervisor and the
node. Agents are ``tests/agents/rogue.py`` (its prompt lists what it does) and
``tests/agents/worker.py``; every leftover is looked for by the test's own marker in the
environment (``PAGENT_TEST_MARK``, set in the agent's ``env``, which is what the job carries).
"""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import git, status_json
from tests.hostile import run, tasks_by_id, write_plan
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


class JobWatch:
    """Polls the cluster's job list (every 0.1 s, in a thread) for one plan's jobs: the most
    that ran at once, and every id seen."""

    def __init__(self, head: RayHead, plan: Path) -> None:
        import hashlib

        from ray.job_submission import JobSubmissionClient

        uid = hashlib.sha1(str(plan.resolve()).encode(), usedforsecurity=False).hexdigest()[:12]
        self.prefix = f"pagent-{uid}-"
        self._client = JobSubmissionClient(head.address)
        self.peak = 0
        self.seen: set[str] = set()
        self._stop = False
        self._thread = __import__("threading").Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop:
            jobs = [j for j in self._client.list_jobs() if (j.submission_id or "").startswith(self.prefix)]
            running = [
                j
                for j in jobs
                if str(j.status.value) == "RUNNING" and not j.submission_id.endswith("-verify")
            ]
            self.peak = max(self.peak, len(running))
            self.seen.update(j.submission_id for j in jobs)
            time.sleep(0.1)

    def __enter__(self) -> JobWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop = True
        self._thread.join(10)


@pytest.mark.parametrize("jobs", [2, 3])
def test_never_more_jobs_at_once_than_the_cluster_has_slots(  # noqa: PLR0917 - fixtures
    tmp_path: Path, repo: Path, origin: Path, ray_head: RayHead, mark: str, jobs: int
) -> None:
    """Five tasks of two seconds each on a head with two agent slots: never more than two jobs
    run at once, with jobs = 2 and with jobs = 3 (then the third task waits for the cluster,
    which the run says once, and nothing is submitted into a full cluster: no launch failure)."""
    tasks = {f"t{i}": {"prompt": ["sleep 2", f"write t{i}.txt {i}"]} for i in range(5)}
    plan = ray_plan(tmp_path, repo, ray_head, tasks, mark=mark, jobs=jobs)
    with JobWatch(ray_head, plan) as watch:
        done = run(plan, timeout=240)
    assert done.returncode == 0, done.stderr
    assert watch.peak == 2, watch.peak
    found = tasks_by_id(plan)
    assert all(task["attempts"] == 1 for task in found.values()), found
    waits = done.stderr.count("waiting for cluster capacity")
    if jobs > ray_head.slots:  # said when the wait begins (the gate's notice), not at every look
        assert 1 <= waits <= 3, done.stderr
        assert "the cluster has room for 2 such jobs" in done.stderr
    else:
        assert waits == 0, done.stderr
    assert len(watch.seen) == 5  # one job per attempt, each with its own id
