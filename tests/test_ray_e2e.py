"""``[executor] kind = "ray"`` through the installed ``pagent-run`` and ``pagent``, on a real Ray head.

The head (``tests.ray_head``) listens on 127.0.0.1 with ``agent_slot = 2``; a bare repository in
tmp_path is the plan repository's ``origin`` and the data plane between the supervisor and the
node. Agents are ``tests/agents/rogue.py`` (its prompt lists what it does) and
``tests/agents/worker.py``; every leftover is looked for by the test's own marker in the
environment (``PAGENT_TEST_MARK``, set in the agent's ``env``, which is what the job carries).
"""

from __future__ import annotations

import hashlib
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.conftest import git, status_json
from tests.hostile import Reaper, ended_within, pagent, reaping, run, tasks_by_id, wait_for, write_plan
from tests.ray_head import RayHead
from tests.test_ray_node import marked

pytestmark = [pytest.mark.slow, pytest.mark.ray, pytest.mark.timeout(300)]

AGENTS = Path(__file__).parent / "agents"


@pytest.fixture(autouse=True)
def _ray_required(ray_head: RayHead) -> None:
    """Every test here needs the head (the fixture skips, naming why, without Ray)."""


@pytest.fixture(autouse=True)
def origin(repo: Path, tmp_path: Path) -> Path:
    """A bare clone of ``repo``, set as its ``origin``: what every node fetches from and pushes to."""
    path = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(path))
    git(repo, "remote", "add", "origin", str(path))
    return path


@pytest.fixture
def mark() -> str:
    return uuid.uuid4().hex


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
    env = {"PAGENT_TEST_MARK": mark, "RAY_TEST_DIR": str(agent_dir(tmp_path))}
    agents = {
        "rogue": {"command": ["{python}", str(AGENTS / "rogue.py")], "env": env},
        "task": {"command": ["{python}", str(AGENTS / "ray_task.py")], "env": env},
    }
    return write_plan(
        tmp_path / "plans",
        repo,
        tasks,
        waves=waves,
        defaults={"timeout": "60s", "stall_timeout": "30s", **(defaults or {})},
        top={"jobs": jobs, "executor": table},
        agents=agents,
    )


def agent_dir(tmp_path: Path) -> Path:
    """Where ``ray_task.py`` agents leave their pid files."""
    path = tmp_path / "agent"
    path.mkdir(exist_ok=True)
    return path


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def pid_in(path: Path) -> int:
    return int(path.read_text())


def plan_jobs(head: RayHead, plan: Path) -> dict[str, str]:
    """The cluster's jobs of ``plan``: submission id -> status."""
    from ray.job_submission import JobSubmissionClient

    prefix = JobWatch.prefix_of(plan)
    client = JobSubmissionClient(head.address)
    return {
        j.submission_id: str(j.status.value)
        for j in client.list_jobs()
        if (j.submission_id or "").startswith(prefix)
    }


def branch_file(repo: Path, branch: str, path: str) -> str:
    return git(repo, "show", f"{branch}:{path}")


def test_two_waves_commit_on_their_branches_through_ray(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str
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
    # Nothing of a Ray task lives on this machine: clean has nothing to remove, every branch stays.
    cleaned = pagent("clean", plan)
    assert cleaned.returncode == 0, cleaned.stderr
    assert git(repo, "rev-parse", found["a"]["branch"]).strip() == pin_of(repo, view["run_id"], "a")


def pin_of(repo: Path, run_id: str, task: str, attempt: int = 1) -> str:
    return git(repo, "rev-parse", f"refs/pagent/{run_id}/{task}/{attempt}").strip()


def test_preflight_runs_on_the_cluster(tmp_path: Path, repo: Path, ray_head: RayHead, mark: str) -> None:
    """An agent with ``preflight = true``: its ``--version`` and the one-line prompt run as jobs
    of their own (no workspace, no resource), and the version recorded is the node's."""
    plan = ray_plan(
        tmp_path, repo, ray_head, {"p": {"agent": "task", "prompt": ["commit p.txt p"]}}, mark=mark
    )
    plan.write_text(plan.read_text().replace("[agents.task]\n", "[agents.task]\npreflight = true\n"))
    done = run(plan, timeout=240)
    assert done.returncode == 0, done.stderr
    view = status_json(plan)
    assert view["agent_version"] == f"task: Python {sys.version.split()[0]}", view["agent_version"]
    assert tasks_by_id(plan)["p"]["state"] == "succeeded"


class JobWatch:
    """Polls the cluster's job list (every 0.1 s, in a thread) for one plan's jobs: the most
    attempts (verify jobs aside) that ran at once, and every id seen."""

    def __init__(self, head: RayHead, plan: Path) -> None:
        from ray.job_submission import JobSubmissionClient

        self.prefix = self.prefix_of(plan)
        self._client = JobSubmissionClient(head.address)
        self.peak = 0
        self.seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    @staticmethod
    def prefix_of(plan: Path) -> str:
        """The submission ids' prefix of ``plan``'s jobs (its uid: a hash of its real path)."""
        uid = hashlib.sha1(str(plan.resolve()).encode(), usedforsecurity=False).hexdigest()[:12]
        return f"pagent-{uid}-"

    def _poll(self) -> None:
        while not self._stop.is_set():
            jobs = [j for j in self._client.list_jobs() if (j.submission_id or "").startswith(self.prefix)]
            running = [
                j for j in jobs if str(j.status.value) == "RUNNING" and "-verify" not in j.submission_id
            ]
            self.peak = max(self.peak, len(running))
            self.seen.update(j.submission_id for j in jobs)
            self._stop.wait(0.1)

    def __enter__(self) -> JobWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)


@pytest.mark.parametrize("jobs", [2, 3])
def test_never_more_jobs_at_once_than_the_cluster_has_slots(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str, jobs: int
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


def test_a_retry_continues_on_the_same_branch(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str
) -> None:
    """Attempt 1 commits and fails; attempt 2 (on the node's cached workspace, from the branch
    as it came home) finds that commit and adds its own: two commits on the branch."""
    prompt = ["commit one.txt first", "fail-on-attempt 1", "expect one.txt", "commit two.txt second"]
    tasks = {"r": {"agent": "task", "prompt": prompt, "retries": 1}}
    plan = ray_plan(tmp_path, repo, ray_head, tasks, mark=mark)
    done = run(plan, timeout=240)
    assert done.returncode == 0, done.stderr
    task = tasks_by_id(plan)["r"]
    assert task["attempts"] == 2
    assert [h["reason"] for h in task["history"]] == ["exit 1", "ok"]
    assert task["diff"]["commits"] == 2
    assert branch_file(repo, task["branch"], "one.txt") == "first\n"
    assert branch_file(repo, task["branch"], "two.txt") == "second\n"
    second = Path(task["history"][1]["log"]).read_text()
    assert "found one.txt" in second
    assert "agent r attempt 2 on stderr" in second  # stderr reaches the log too
    run_id = status_json(plan)["run_id"]
    first_pin = git(repo, "rev-parse", f"refs/pagent/{run_id}/r/1").strip()
    assert git(repo, "rev-parse", f"{task['branch']}~1").strip() == first_pin


def test_stalled_and_timed_out_agents_are_stopped_with_their_whole_tree(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str
) -> None:
    """One agent leaves a setsid daemon without pagent's variables and falls silent: stopped as
    stalled (from the node's CPU samples and no output); one prints for ever: stopped at its
    timeout. Neither leaves a process on the node, the daemons included."""
    hold = str(tmp_path / "never")
    tasks = {
        "s": {"agent": "task", "prompt": ["stall-on-attempt 1"], "stall_timeout": "4s"},
        "t": {"agent": "task", "prompt": ["write partial.txt half", f"work-until {hold}"], "timeout": "8s"},
    }
    plan = ray_plan(tmp_path, repo, ray_head, tasks, mark=mark)
    started = time.monotonic()
    done = run(plan, timeout=240)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stderr
    found = tasks_by_id(plan)
    assert found["s"]["reason"] == "stalled", found["s"]
    assert found["t"]["reason"] == "timeout", found["t"]
    assert took < 60, took
    daemon = pid_in(agent_dir(tmp_path) / "s.daemon")
    for pid in (daemon, pid_in(agent_dir(tmp_path) / "s.1.pid"), pid_in(agent_dir(tmp_path) / "t.1.pid")):
        wait_for(lambda pid=pid: not alive(pid), 10, f"process {pid} to be gone")
    assert not marked(mark)
    # The timed-out agent's work was committed on the node and came home all the same.
    assert branch_file(repo, found["t"]["branch"], "partial.txt") == "half\n"
    assert "stopping the agent: timeout" in Path(found["t"]["log"]).read_text()


def test_verify_runs_on_the_node_in_the_attempts_workspace(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str
) -> None:
    """verify runs on the node where the attempt ran, in its cached workspace: it sees a file the
    agent left ignored (never committed, so not in the plan's repository); a failing verify
    fails its task with reason verify. Its output is in the attempt's log."""
    check = (
        "import os, pathlib, sys; print('verify in', os.getcwd());"
        "sys.exit(0 if pathlib.Path('build/artifact').exists() else 5)"
    )
    prompt = ["commit .gitignore build/", "write build/artifact ignored", "commit code.txt code"]
    tasks = {
        "ok": {"agent": "task", "prompt": prompt, "verify": [sys.executable, "-c", check]},
        "bad": {"agent": "task", "prompt": ["commit code.txt code"], "verify": [sys.executable, "-c", check]},
    }
    plan = ray_plan(tmp_path, repo, ray_head, tasks, mark=mark)
    done = run(plan, timeout=240)
    assert done.returncode == 1, done.stderr
    found = tasks_by_id(plan)
    assert found["ok"]["state"] == "succeeded", found["ok"]
    assert found["bad"]["reason"] == "verify", found["bad"]
    log = Path(found["ok"]["log"]).read_text()
    cache = str(ray_head.temp_dir / "node-cache")
    assert f"verify in {cache}" in log, log
    assert "verify: exit 0" in log
    assert "verify: exit 5" in Path(found["bad"]["log"]).read_text()
    assert "build/artifact" not in git(repo, "ls-tree", "-r", "--name-only", found["ok"]["branch"])


@pytest.fixture
def reaper(tmp_path: Path) -> Iterator[Reaper]:
    with reaping(tmp_path) as started:
        yield started


def working_plan(tmp_path: Path, repo: Path, head: RayHead, mark: str, tasks: list[str]) -> Path:
    """Tasks whose agents hold their lock and work (printing) until a file that never comes."""
    never = tmp_path / "never"
    prompt = ["lock", "commit started.txt started", f"work-until {never}"]
    work = {task: {"agent": "task", "prompt": prompt, "timeout": "120s"} for task in tasks}
    return ray_plan(tmp_path, repo, head, work, mark=mark)


def test_sigterm_of_the_supervisor_stops_every_job(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str, reaper: Reaper
) -> None:
    """SIGTERM to pagent-run while two jobs run: both are stopped with their trees, the run
    exits 143 with its tasks interrupted, and no job of the plan is left on the cluster."""
    plan = working_plan(tmp_path, repo, ray_head, mark, ["x", "y"])
    proc = reaper.start(plan)
    pids = [agent_dir(tmp_path) / f"{task}.1.pid" for task in ("x", "y")]
    wait_for(lambda: all(p.exists() for p in pids), 60, "both agents to run")
    proc.send_signal(signal.SIGTERM)
    assert ended_within(proc, 60) == 143, reaper.output(proc)
    for path in pids:
        assert not alive(pid_in(path))
    assert not marked(mark)
    assert all(status in ("STOPPED", "SUCCEEDED", "FAILED") for status in plan_jobs(ray_head, plan).values())
    found = tasks_by_id(plan)
    assert {found[t]["state"] for t in ("x", "y")} == {"interrupted"}
    for task in ("x", "y"):  # what they committed before the stop came home
        assert branch_file(repo, found[task]["branch"], "started.txt") == "started\n"


def test_sigkill_of_the_supervisor_then_the_next_run_stops_the_orphaned_jobs(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str, reaper: Reaper
) -> None:
    """SIGKILL of pagent-run: its jobs go on running on the cluster (no supervisor can stop
    them). The next ``pagent-run --retry-failed`` stops them before it starts anything (the
    retried agents would find their lock taken otherwise) and completes the run."""
    plan = working_plan(tmp_path, repo, ray_head, mark, ["x", "y"])
    proc = reaper.start(plan)
    pids = [agent_dir(tmp_path) / f"{task}.1.pid" for task in ("x", "y")]
    wait_for(lambda: all(p.exists() for p in pids), 60, "both agents to run")
    proc.kill()
    proc.wait(10)
    time.sleep(2)  # a moment later, they still run: nothing stops them but the next run
    assert all(alive(pid_in(path)) for path in pids)
    assert sorted(plan_jobs(ray_head, plan).values()) == ["RUNNING", "RUNNING"]
    plan.write_text(plan.read_text().replace(f"work-until {tmp_path / 'never'}", "commit done.txt done"))
    again = run(plan, "--retry-failed", timeout=240)
    assert again.returncode == 0, again.stderr
    # The two jobs (and whatever git the killed supervisor had running on this machine).
    stopped = re.search(r"stopped (\d+) leftover", again.stderr)
    assert stopped is not None, again.stderr
    assert int(stopped[1]) >= 2, again.stderr
    for path in pids:
        assert not alive(pid_in(path))
    found = tasks_by_id(plan)
    for task in ("x", "y"):
        assert found[task]["state"] == "succeeded"
        assert found[task]["attempts"] == 2
        assert branch_file(repo, found[task]["branch"], "done.txt") == "done\n"
        assert (
            branch_file(repo, found[task]["branch"], "started.txt") == "started\n"
        )  # attempt 1's, recovered
    assert not marked(mark)


def test_done_when_six_tasks_in_two_waves_through_a_sigkill(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str, reaper: Reaper
) -> None:
    """Issue 17's "done when": six tasks in two waves on a head with agent_slot = 2, jobs = 2.
    Wave 1: two tasks commit; a third hangs on its first attempt (a setsid daemon left behind,
    then silence): stopped as stalled, nothing of it left, its retry commits. Wave 2: pagent-run
    is SIGKILLed while two agents work; ``--retry-failed`` stops the orphaned jobs and completes
    the run. Every commit is on its branch, fetched from the remote; never more than two jobs
    at once; each attempt's log holds its agent's output."""
    origin = tmp_path / "origin.git"
    never = tmp_path / "never"
    held = ["lock", "commit {task}.txt {task}", f"work-until {never}"]
    tasks: dict[str, dict[str, Any]] = {
        "a": {"prompt": ["commit a.txt a"]},
        "b": {"prompt": ["write b.txt b"]},  # auto-committed
        "s": {"prompt": ["stall-on-attempt 1", "commit s.txt s"], "stall_timeout": "4s", "retries": 1},
        "d": {"prompt": [line.format(task="d") for line in held]},
        "e": {"prompt": [line.format(task="e") for line in held]},
        "f": {"prompt": ["commit f.txt f"]},
    }
    for task in tasks.values():
        task["agent"] = "task"
    plan = ray_plan(tmp_path, repo, ray_head, tasks, mark=mark, waves=[["a", "b", "s"], ["d", "e", "f"]])
    pids = [agent_dir(tmp_path) / f"{task}.1.pid" for task in ("d", "e")]
    with JobWatch(ray_head, plan) as watch:
        proc = reaper.start(plan)
        logs = tmp_path / "plans" / ".pagent" / "runs"

        def working(task: str) -> bool:
            return any(b"working" in log.read_bytes() for log in logs.glob(f"*/logs/{task}.1.log"))

        wait_for(lambda: working("d") and working("e"), 120, "wave 2's first two agents to work")
        proc.kill()
        proc.wait(10)
        assert sorted(plan_jobs(ray_head, plan).values()).count("RUNNING") == 2
        assert all(alive(pid_in(path)) for path in pids)
        plan.write_text(plan.read_text().replace(f"work-until {never}", "print retried"))
        again = run(plan, "--retry-failed", timeout=240)
    assert again.returncode == 0, again.stderr
    assert "had been stopped without cleanup" in again.stderr
    # The two jobs (and whatever git the killed supervisor had running on this machine).
    stopped = re.search(r"stopped (\d+) leftover", again.stderr)
    assert stopped is not None, again.stderr
    assert int(stopped[1]) >= 2, again.stderr
    assert watch.peak == 2, watch.peak
    found = tasks_by_id(plan)
    assert {t["state"] for t in found.values()} == {"succeeded"}, found
    remote_refs = dict(
        reversed(line.split("\t"))
        for line in git(origin, "for-each-ref", "--format=%(objectname)\t%(refname)").splitlines()
    )
    for task_id, task in found.items():
        assert branch_file(repo, task["branch"], f"{task_id}.txt") == f"{task_id}\n"
        tip = git(repo, "rev-parse", task["branch"]).strip()
        assert remote_refs[f"refs/heads/{task['branch']}"] == tip  # what the node pushed came home
        for attempt in task["history"]:
            log = Path(attempt["log"]).read_text()
            assert f"agent {task_id} attempt" in log, log
    # The hanging attempt: stalled, and nothing of it left (its daemon scrubbed pagent's variables).
    assert [h["reason"] for h in found["s"]["history"]] == ["stalled", "ok"]
    for path in (agent_dir(tmp_path) / "s.daemon", agent_dir(tmp_path) / "s.1.pid", *pids):
        assert not alive(pid_in(path)), path
    assert [h["reason"] for h in found["d"]["history"]] == ["interrupted", "ok"]
    assert not marked(mark)
    assert not [s for s in plan_jobs(ray_head, plan).values() if s in ("RUNNING", "PENDING")]


def test_a_prompt_too_large_for_a_command_line_travels_through_git(
    tmp_path: Path, repo: Path, ray_head: RayHead, mark: str
) -> None:
    """Ray runs a job's command through ``sh -c`` (one argument: at most 128 KiB): a 400 KB
    prompt file that does not compress reaches the agent whole, its spec carried as a blob on the
    remote."""
    noise = hashlib.sha256(b"seed").hexdigest()
    filler = "".join(hashlib.sha256(f"{noise}{i}".encode()).hexdigest() for i in range(6000))
    prompt = tmp_path / "plans" / "big.md"
    prompt.parent.mkdir(parents=True, exist_ok=True)
    prompt.write_text(f"commit big.txt done\nnoise {filler}\n")
    plan = ray_plan(tmp_path, repo, ray_head, {"big": {"agent": "task", "prompt_file": "big.md"}}, mark=mark)
    done = run(plan, timeout=240)
    assert done.returncode == 0, done.stderr
    task = tasks_by_id(plan)["big"]
    size = len(Path(task["history"][0]["log"]).read_bytes())
    assert f"prompt of {prompt.stat().st_size} bytes" in Path(task["log"]).read_text(), size
    assert branch_file(repo, task["branch"], "big.txt") == "done\n"
    origin = tmp_path / "origin.git"
    assert git(origin, "for-each-ref", "--format=%(objecttype)", "refs/pagent-specs/").split() == ["blob"]
