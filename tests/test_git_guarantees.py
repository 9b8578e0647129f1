"""pagent's own git calls and the refs it keeps, end to end through the installed CLI.

Beyond the hostile cases (``test_hostile_git``, ``test_hostile_refs``, ``test_hostile_clean``):
hooks are off for pagent's git, so these use what git still runs on pagent's behalf -- a smudge
filter that never returns (filters are part of a checkout, so they stay on) -- and a FIFO that
blocks auto-commit's ``git add``. SIGTERM ends the run with 143 at once and nothing of git is
left; after a SIGKILL the guardian stops git's group (the filter in it included) and the next
run stops a filter that had left the group (by its cookie). And
what the morning shows: pins, refs others moved, work off the branch.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import git, status_json
from tests.hostile import (
    Reaper,
    alive,
    ended_within,
    pagent,
    pid_from,
    reachable,
    reaping,
    run,
    tasks_by_id,
    wait_for,
    write_plan,
)

pytestmark = pytest.mark.slow  # real processes (README, "Tests")


@pytest.fixture
def reaper(tmp_path: Path) -> Iterator[Reaper]:
    with reaping(tmp_path) as started:
        yield started


def hanging_filter(repo: Path, pidfile: Path, *, own_session: bool = False) -> None:
    """A file checked in under a smudge filter that records its pid and never returns: every
    checkout of it (``git worktree add``) hangs in the filter. ``own_session``: the filter first
    leaves git's process group (``setsid``), as a daemonising filter would."""
    (repo / ".gitattributes").write_text("*.bin filter=hang\n")
    (repo / "data.bin").write_text("payload\n")
    git(repo, "add", ".gitattributes", "data.bin")
    git(repo, "commit", "--quiet", "-m", "filtered file")
    script = pidfile.with_suffix(".sh")
    record = f'echo $$ > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}"; exec sleep 3600'
    script.write_text(f"exec setsid sh -c '{record}'\n" if own_session else f"{record}\n")
    git(repo, "config", "filter.hang.smudge", f"sh {script}")


def test_sigterm_during_a_hanging_filter_ends_the_run_with_143_and_nothing_left(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    pidfile = tmp_path / "filter.pid"
    hanging_filter(repo, pidfile)
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    proc = reaper.start(plan)
    wait_for(pidfile.exists, 20, "the filter")
    proc.send_signal(signal.SIGTERM)
    assert ended_within(proc, 5) == 143, reaper.output(proc)
    wait_for(lambda: not alive(pid_from(pidfile)), 2, "the filter's end")
    assert reaper.leftovers() == []
    assert tasks_by_id(plan)["a"]["state"] == "not_run"


def killed_in_filter(
    tmp_path: Path, repo: Path, reaper: Reaper, *, own_session: bool = False
) -> tuple[Path, int]:
    """A run SIGKILLed while its ``git worktree add`` hangs in the filter: the plan, the filter's pid."""
    pidfile = tmp_path / "filter.pid"
    hanging_filter(repo, pidfile, own_session=own_session)
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    proc = reaper.start(plan)
    wait_for(pidfile.exists, 20, "the filter")
    proc.kill()
    proc.wait()
    return plan, pid_from(pidfile)


def test_after_a_sigkill_during_a_hanging_filter_the_guardian_stops_git_and_the_filter(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """The guardian stops git's whole process group when the supervisor dies: the filter git
    started there ends with it, without waiting for a next run."""
    _, filter_pid = killed_in_filter(tmp_path, repo, reaper)
    wait_for(lambda: not alive(filter_pid), 5, "the filter's end")
    # git got the same SIGTERM; on a loaded machine it may still be ending a moment later.
    wait_for(lambda: reaper.leftovers() == [], 5, "the end of git and everything else")


def test_after_a_sigkill_during_a_hanging_filter_the_next_run_stops_what_git_left(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """A filter that left git's process group is out of the guardian's reach, but carries the
    plan's cookie: the next run's recovery stops it before anything starts."""
    plan, filter_pid = killed_in_filter(tmp_path, repo, reaper, own_session=True)
    assert alive(filter_pid)  # what the next run must repair
    git(repo, "config", "--unset", "filter.hang.smudge")  # the next run must not hang in it again
    done = run(plan)
    assert done.returncode == 0, done.stderr
    assert "leftover agent process(es) of earlier runs" in done.stderr, done.stderr
    assert not alive(filter_pid)
    assert reaper.leftovers() == []


FIFO_AGENT = """
import os, pathlib, subprocess
found = subprocess.run(["git", "rev-parse", "--git-common-dir"], capture_output=True, text=True)
common = found.stdout.strip()
attributes = pathlib.Path(common, "info", "attributes")
attributes.parent.mkdir(exist_ok=True)
os.mkfifo(attributes)
pathlib.Path("left.txt").write_text("uncommitted work\\n")
"""


def test_sigterm_while_auto_commit_is_blocked_ends_the_run_at_once(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """The agent turns the repository's ``info/attributes`` into a FIFO and leaves work
    uncommitted: auto-commit's ``git add`` blocks. SIGTERM: 143 within the grace, no git left,
    and the agent's commits so far were pinned before pagent touched anything."""
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": {"agent": "fifo"}},
        agents={"fifo": {"command": [sys.executable, "-c", FIFO_AGENT]}},
    )
    fifo = repo / ".git" / "info" / "attributes"
    proc = reaper.start(plan)
    writer = None
    try:
        deadline = time.monotonic() + 20
        while writer is None:
            assert time.monotonic() < deadline, reaper.output(proc)
            assert proc.poll() is None, reaper.output(proc)
            try:
                writer = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)  # succeeds once git reads it
            except OSError:
                time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        code = ended_within(proc, 6)  # kill_grace (1 s) for the workspace's git, then the rest
        left = reaper.leftovers()
    finally:
        if writer is not None:
            os.close(writer)
    assert code == 143, reaper.output(proc)
    assert left == []
    task = tasks_by_id(plan)["a"]
    assert task["state"] == "interrupted"
    run_id = status_json(plan)["run_id"]
    assert (
        git(repo, "rev-parse", f"refs/pagent/{run_id}/a/1").strip() == git(repo, "rev-parse", "main").strip()
    )


def test_clean_pins_a_worktrees_head_before_removing_it(tmp_path: Path, repo: Path) -> None:
    """Someone commits in a task's worktree after the run, detached; ``clean --force`` removes
    the worktree, and the commit stays reachable from ``refs/pagent/<run>/<task>/cleaned-<n>``."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": "write w.txt w\ncommit w"}})
    assert run(plan).returncode == 0
    task = tasks_by_id(plan)["a"]
    worktree = Path(task["worktree"])
    git(worktree, "checkout", "--quiet", "--detach")
    (worktree / "late.txt").write_text("late\n")
    git(worktree, "add", "late.txt")
    git(worktree, "commit", "--quiet", "-m", "late")
    late = git(worktree, "rev-parse", "HEAD").strip()
    done = pagent("clean", plan, "--force")
    assert done.returncode == 0, done.stderr
    assert not worktree.exists()
    run_id = status_json(plan)["run_id"]
    assert f"refs/pagent/{run_id}/a/cleaned-1" in reachable(repo, late)


def test_refs_others_moved_are_in_status_summary_and_report(tmp_path: Path, repo: Path) -> None:
    """The agent moves ``main`` and creates a tag: both are listed (with the task and attempt)
    in ``status --json``, the status table, the summary and the report, and in the attempt's
    detail; the task's own branch is not."""
    before = git(repo, "rev-parse", "main").strip()
    prompt = "write w.txt w\ncommit w\nmove-ref refs/heads/main\nmove-ref refs/tags/v9"
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": prompt}})
    done = run(plan)
    assert done.returncode == 0, done.stderr
    view = status_json(plan)
    moved = {m["ref"]: m for m in view["moved_refs"]}
    assert set(moved) == {"refs/heads/main", "refs/tags/v9"}
    assert moved["refs/heads/main"]["before"] == before
    assert (moved["refs/tags/v9"]["before"], moved["refs/tags/v9"]["task"]) == (None, "a")
    assert {m["ref"] for m in view["tasks"][0]["detail"]["moved_refs"]} == set(moved)
    assert "refs/heads/main  moved" in done.stdout
    table = pagent("status", plan).stdout
    assert "refs/heads/main  moved" in table
    assert "(during a, attempt 1)" in table
    report = (plan.parent / ".pagent" / "runs" / view["run_id"] / "report.html").read_text()
    assert "Refs changed while agents ran" in report
    assert "refs/tags/v9" in report


def test_work_off_its_branch_is_not_retried_and_its_commit_is_pinned(tmp_path: Path, repo: Path) -> None:
    """``not-on-branch`` is not retried blindly (``retry_on`` can ask for it); the detached
    commit is pinned at ``<attempt>-head``, which the status detail names."""
    head = tmp_path / "head.txt"
    prompt = f"detach\nwrite w.txt w\ncommit w\nhead-to {head}"
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": prompt, "retries": 2}})
    assert run(plan).returncode == 1
    task = tasks_by_id(plan)["a"]
    assert (task["state"], task["reason"], task["attempts"]) == ("failed", "not-on-branch", 1)
    pins = task["detail"]["pinned"]
    run_id = status_json(plan)["run_id"]
    assert pins == [f"refs/pagent/{run_id}/a/1", f"refs/pagent/{run_id}/a/1-head"]
    assert git(repo, "rev-parse", pins[1]).strip() == head.read_text().strip()


def test_a_plan_through_a_symlink_is_the_same_plan(tmp_path: Path, repo: Path) -> None:
    """Status through a symlink beside the plan names the plan's own runs; the default
    worktree root carries the plan's uid, so two plans of one name never share it."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    assert run(plan).returncode == 0
    link = plan.parent / "tonight.toml"
    link.symlink_to(plan.name)
    view, through = status_json(plan), status_json(link)
    assert through["run_id"] == view["run_id"]
    root = Path(view["tasks"][0]["worktree"]).parent.parent
    assert root.parent == tmp_path / "repo.worktrees"
    assert root.name.startswith("h-")
    assert len(root.name) == len("h-") + 12
    assert json.loads((plan.parent / ".pagent" / "runs" / view["run_id"] / "summary.json").read_text())


def test_clean_keeps_a_users_worktree_and_directory_under_the_plans_own_root(
    tmp_path: Path, repo: Path
) -> None:
    """The hostile case at the plan's real default root (``<repo>.worktrees/<name>-<uid>``): a
    worktree of the user's and an empty directory there are kept; the run's own go, and its run
    directory with them."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    assert run(plan).returncode == 0
    worktree = Path(tasks_by_id(plan)["a"]["worktree"])
    run_dir, root = worktree.parent, worktree.parent.parent
    mine, empty = root / "mine", root / "keep-me"
    git(repo, "worktree", "add", "--quiet", "-b", "mine", str(mine))
    (mine / "notes.txt").write_text("mine\n")  # untracked: clean would refuse if it looked here
    empty.mkdir()
    done = pagent("clean", plan)
    assert done.returncode == 0, done.stderr
    assert not worktree.exists()
    assert not run_dir.exists()
    assert (mine / "notes.txt").exists()
    assert empty.is_dir()
    assert done.stdout.startswith("removed 1 worktree(s)")
