"""``pagent clean`` under attack, and commits that must stay reachable whatever an agent does.

Issue 12 promises: ``clean`` removes only what pagent created -- worktrees recorded in this
plan's own runs -- never another plan's or a user's worktree or directory, never while a run
owning one is active, and ``--run`` accepts only a known run id; every commit an agent made
stays reachable from some ref (pinned under ``refs/pagent/...``) after any pagent command; and a
``done_marker`` the agent turned into a symlink never makes pagent delete a file outside the
worktree. The installed CLI on real repositories; Each case was written first against code that did
not hold it (issue 12); the fixes made every one hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git, status_json
from tests.hostile import Reaper, ended_within, pagent, reachable, reaping, run, wait_for, write_plan

pytestmark = pytest.mark.slow  # real processes (README, "Tests")


@pytest.fixture
def reaper(tmp_path: Path) -> Iterator[Reaper]:
    with reaping(tmp_path) as started:
        yield started


def worktree_of(plan: Path, task_id: str) -> Path:
    return Path(next(t["worktree"] for t in status_json(plan)["tasks"] if t["id"] == task_id))


def two_plans_called_plan(tmp_path: Path, repo: Path, **first: Any) -> tuple[Path, Path]:
    """Two teams' plans, both files called ``plan.toml`` (so both named "plan"), one repo."""
    a = write_plan(tmp_path / "teamA", repo, {"a": {"prompt": "write a.txt a\ncommit a"}, **first}, name=None)
    b = write_plan(tmp_path / "teamB", repo, {"b": {"prompt": "write b.txt b\ncommit b"}}, name=None)
    return a, b


def test_clean_never_removes_another_plans_worktrees(tmp_path: Path, repo: Path) -> None:
    """Two plan files called ``plan.toml`` share ``<repo>.worktrees/plan``; today cleaning B
    removes A's worktree too ("removed 2 worktree(s)")."""
    first, second = two_plans_called_plan(tmp_path, repo)
    assert run(first).returncode == 0
    assert run(second).returncode == 0
    theirs = worktree_of(first, "a")
    done = pagent("clean", second)
    assert done.returncode == 0, done.stderr
    assert theirs.exists()
    assert not worktree_of(second, "b").exists()


def test_clean_never_removes_the_worktree_of_another_plans_active_run(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """Plan A's agent is working; ``pagent clean --force`` of plan B (same worktree root) today
    removes A's live worktree: A's work is lost and A's run dies with an internal error."""
    release, started = tmp_path / "release", tmp_path / "started"
    prompt = f"write precious.txt work\nwrite {started} x\nwait-for {release}"
    first, second = two_plans_called_plan(tmp_path, repo, a={"prompt": prompt})
    assert run(second).returncode == 0
    proc = reaper.start(first)
    wait_for(started.exists, 20, "plan A's agent")
    live = worktree_of(first, "a")
    pagent("clean", second, "--force")
    alive_after_clean = live.exists()
    release.touch()
    assert ended_within(proc, 30) == 0, reaper.output(proc)
    assert alive_after_clean
    branch = next(t["branch"] for t in status_json(first)["tasks"] if t["id"] == "a")
    assert git(repo, "show", f"{branch}:precious.txt") == "work\n"


def test_clean_never_removes_a_users_worktree_or_directory_under_the_root(tmp_path: Path, repo: Path) -> None:
    """The user keeps a worktree of their own (with an ignored ``.env``) and an empty
    directory under the plan's worktree root; today clean removes both, ``.env`` included."""
    (repo / ".gitignore").write_text(".env\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "--quiet", "-m", "ignore .env")
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    assert run(plan).returncode == 0
    root = tmp_path / "repo.worktrees" / "h"
    mine, empty = root / "mine", root / "keep-me"
    git(repo, "worktree", "add", "--quiet", "-b", "mine", str(mine))
    (mine / ".env").write_text("TOKEN=not-in-git\n")
    empty.mkdir()
    done = pagent("clean", plan)
    assert done.returncode == 0, done.stderr
    assert (mine / ".env").exists()
    assert empty.is_dir()


def test_clean_keeps_the_users_empty_directories_in_a_shared_worktree_root(
    tmp_path: Path, repo: Path
) -> None:
    """``worktree_root = "../shared"``, a directory the user also keeps things in."""
    keep = tmp_path / "shared" / "user" / "empty"
    keep.mkdir(parents=True)
    plan = write_plan(tmp_path / "plans", repo, {"a": {}}, top={"worktree_root": "../shared"})
    assert run(plan).returncode == 0
    assert pagent("clean", plan).returncode == 0
    assert keep.is_dir()


def test_clean_with_the_worktree_root_above_the_repository(tmp_path: Path, repo: Path) -> None:
    """``worktree_root = ".."`` holds the repository itself: clean must remove the plan's
    worktrees and nothing else. Before issue 12, it tries to remove the main worktree and exits 1
    ("is a main working tree"), removing nothing."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {}}, top={"worktree_root": ".."})
    assert run(plan).returncode == 0
    done = pagent("clean", plan)
    assert done.returncode == 0, done.stderr
    assert not worktree_of(plan, "a").exists()
    assert (repo / ".git").is_dir()


@pytest.mark.parametrize(
    "run_id",
    [
        pytest.param("../..", id="dotdot-out-of-the-root"),
        pytest.param("ABSOLUTE", id="absolute-path-of-a-users-worktree"),
        pytest.param("no-such-run", id="unknown-id"),
    ],
)
def test_clean_run_accepts_only_a_known_run_id(tmp_path: Path, repo: Path, run_id: str) -> None:
    """Before issue 12, ``--run ../..`` sweeps empty directories far outside the root, ``--run /path``
    removes the user's worktree there, and an unknown id exits 0 ("removed 0 worktree(s))."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    assert run(plan).returncode == 0
    victim, empty = tmp_path / "victim", tmp_path / "victim-empty"
    git(repo, "worktree", "add", "--quiet", "-b", "victim", str(victim))
    empty.mkdir()
    done = pagent("clean", plan, "--run", str(victim) if run_id == "ABSOLUTE" else run_id)
    assert victim.exists()
    assert empty.is_dir()
    assert done.returncode == 2, done.stdout
    assert worktree_of(plan, "a").exists()


# -- commits stay reachable ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param(
            "write w.txt w\ncommit work\nhead-to HEAD_FILE\ndelete-own-branch", id="agent-deletes-its-branch"
        ),
        pytest.param("detach\nwrite w.txt w\ncommit work\nhead-to HEAD_FILE", id="agent-commits-detached"),
    ],
)
def test_every_commit_an_agent_made_is_reachable_after_clean(tmp_path: Path, repo: Path, prompt: str) -> None:
    """After the run and ``pagent clean --force`` the agent's commit must be reachable from a
    ref (e.g. ``refs/pagent/<run>/<task>/<n>``). Before issue 12, only the worktree's HEAD held it: gone."""
    head = tmp_path / "head.txt"
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": prompt.replace("HEAD_FILE", str(head))}})
    run(plan)
    commit = head.read_text().strip()
    assert git(repo, "cat-file", "-t", commit).strip() == "commit"
    pagent("clean", plan, "--force")
    assert reachable(repo, commit) != []


def test_a_task_branch_deleted_by_a_later_agent_leaves_its_commit_reachable(
    tmp_path: Path, repo: Path
) -> None:
    """Wave 1's task ``a`` commits; wave 2's agent deletes ``pagent/h/a`` (``update-ref -d``,
    which git allows although a's worktree has it checked out). After clean the commit must
    still be reachable."""
    head = tmp_path / "head.txt"
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {
            "a": {"prompt": f"write a.txt a\ncommit a\nhead-to {head}"},
            "b": {"prompt": "delete-ref refs/heads/pagent/h/a\nwrite b.txt b"},
        },
        waves=[["a"], ["b"]],
    )
    assert run(plan).returncode == 0
    pagent("clean", plan, "--force")
    assert reachable(repo, head.read_text().strip()) != []


def test_a_plain_run_and_clean_keep_the_agents_commit_on_its_branch(tmp_path: Path, repo: Path) -> None:
    """The baseline, which holds: commit on the task branch, clean, the commit is reachable."""
    head = tmp_path / "head.txt"
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": f"write w.txt w\ncommit w\nhead-to {head}"}})
    assert run(plan).returncode == 0
    assert pagent("clean", plan).returncode == 0
    assert "refs/heads/pagent/h/a" in reachable(repo, head.read_text().strip())


def test_a_done_marker_behind_a_symlink_never_deletes_a_file_outside_the_worktree(
    tmp_path: Path, repo: Path
) -> None:
    """``done_marker = "out/.done"``; the agent makes ``out`` a symlink to a directory outside
    its worktree whose ``.done`` is someone's file. Before issue 12, pagent deletes that file (and then
    the run crashes: auto-commit's pathspec is "beyond a symbolic link")."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / ".done").write_text("someone's file\n")
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": {"prompt": f"symlink out {outside}\nwrite w.txt w", "done_marker": "out/.done"}},
    )
    done = run(plan)
    assert (outside / ".done").read_text() == "someone's file\n"
    assert "internal error" not in done.stderr
