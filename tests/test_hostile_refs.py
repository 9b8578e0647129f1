"""Agents that play with refs: work committed off the task branch, history rewritten, ``main``
moved, branches of other tasks and plans pre-empted or planted.

Issue 12 promises: at the end of each attempt pagent checks that the task branch still exists
and descends from the task's start commit and that HEAD is on it; a task whose work is not on
its branch, or whose history was rewritten, does not end ``succeeded``; a moved ``main`` (or any
branch but the task's own) is reported in status, summary and report; two plans on one
repository never collide on branch names (reserved when the task is created). Real
repositories and the installed CLI; each case was written
first against code that did not hold it (issue 12); the fixes made every one hold.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import git, status_json
from tests.hostile import (
    Reaper,
    ended_cleanly,
    ended_within,
    pagent,
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


# -- the task's own branch -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "prompt",
    [
        pytest.param("checkout-new elsewhere\nwrite w.txt w\ncommit work", id="commits-on-another-branch"),
        pytest.param("detach\nwrite w.txt w\ncommit work", id="commits-on-a-detached-head"),
        pytest.param("write w.txt w\ncommit work\ndelete-own-branch", id="deletes-its-own-branch"),
    ],
)
def test_work_that_is_not_on_the_task_branch_does_not_succeed(
    tmp_path: Path, repo: Path, prompt: str
) -> None:
    """Before issue 12, each is ``succeeded`` with diff stats of HEAD (1 commit), while the task branch
    stays at base or is gone."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": prompt}})
    done = run(plan)
    assert "internal error" not in done.stderr
    assert tasks_by_id(plan)["a"]["state"] != "succeeded"


def test_integration_never_reports_merged_work_it_does_not_contain(tmp_path: Path, repo: Path) -> None:
    """The agent commits on another branch; with ``[integrate]`` today the task is reported
    ``merged: true`` while the integration branch does not contain its commit."""
    head = tmp_path / "head.txt"
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": {"prompt": f"checkout-new elsewhere\nwrite w.txt w\ncommit work\nhead-to {head}"}},
        top={"integrate": {"branch": "integ"}},
    )
    run(plan)
    commit = head.read_text().strip()
    merges = status_json(plan)["integration"]["merges"]
    merged = [m for m in merges if m["task"] == "a" and m["merged"]]
    contained = git(repo, "branch", "--list", "integ", "--contains", commit).strip() != ""
    assert not merged or contained


def test_an_agent_rewriting_the_base_commit_does_not_succeed(tmp_path: Path, repo: Path) -> None:
    """Base has two commits; the agent amends the second (base itself). Before issue 12, the task is
    ``succeeded`` and its diff lists the base's own file as the agent's change."""
    (repo / "second.txt").write_text("2\n")
    git(repo, "add", "second.txt")
    git(repo, "commit", "--quiet", "-m", "second")
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": "write w.txt w\namend rewritten"}})
    view = ended_cleanly(plan, run(plan))
    assert view["tasks"][0]["state"] != "succeeded"


def test_an_agent_moving_main_is_reported(tmp_path: Path, repo: Path) -> None:
    """The agent points ``main`` at its own commit. Before issue 12, the run exits 0 and neither the
    summary nor the status says anything about main."""
    before = git(repo, "rev-parse", "main").strip()
    plan = write_plan(
        tmp_path / "plans", repo, {"a": {"prompt": "write w.txt w\ncommit w\nmove-ref refs/heads/main"}}
    )
    done = run(plan)
    assert git(repo, "rev-parse", "main").strip() != before  # the agent really moved it
    summary = done.stdout.replace(str(tmp_path), "")
    assert "main" in summary, summary


# -- branch names across plans -------------------------------------------------------------------


@pytest.mark.parametrize(
    "clean_between", [False, True], ids=["other-worktree-kept", "other-worktree-cleaned"]
)
def test_two_plans_with_one_name_never_share_a_task_branch(
    tmp_path: Path, repo: Path, reaper: Reaper, clean_between: bool
) -> None:
    """Two plans both named "nightly" with a task ``a``. Plan A starts (its branches chosen,
    ``pagent/nightly/a`` still free) and waits in wave 1; plan B runs whole meanwhile and
    creates that branch; then A's wave 2 reaches ``a``. Before issue 12, A's task fails ("already checked
    out") or, once B's worktree was cleaned, checks B's branch out and builds on B's work."""
    release, gate = tmp_path / "release", tmp_path / "gate-started"
    first = write_plan(
        tmp_path / "teamA",
        repo,
        {
            "gate": {"prompt": f"write {gate} x\nwait-for {release}"},
            "a": {"prompt": "write a.txt A\ncommit A"},
        },
        name="nightly",
        waves=[["gate"], ["a"]],
        top={"worktree_root": "../worktrees-A"},  # so that cleaning B cannot touch A's worktrees
    )
    second = write_plan(
        tmp_path / "teamB",
        repo,
        {"a": {"prompt": "write b.txt B\ncommit B"}},
        name="nightly",
        top={"worktree_root": "../worktrees-B"},
    )
    proc = reaper.start(first)
    wait_for(gate.exists, 20, "plan A's first wave")
    assert run(second).returncode == 0
    if clean_between:
        assert pagent("clean", second).returncode == 0
    release.touch()
    assert ended_within(proc, 30) == 0, reaper.output(proc)
    mine, theirs = tasks_by_id(first)["a"]["branch"], tasks_by_id(second)["a"]["branch"]
    assert mine != theirs
    assert git(repo, "log", "--format=%s", mine).splitlines() == ["A", "initial commit"]


def test_a_task_branch_under_a_users_branch_fails_the_task_clearly(tmp_path: Path, repo: Path) -> None:
    """Holds: the user has a branch ``fix``; the plan's task wants ``fix/one``, which git cannot
    create beside it. The task fails with a reason naming the ref, nothing crashes, and the
    other task runs."""
    git(repo, "branch", "fix")
    plan = write_plan(tmp_path / "plans", repo, {"a": {"branch": "fix/one"}, "b": {}})
    view = ended_cleanly(plan, run(plan))
    tasks = {t["id"]: t for t in view["tasks"]}
    assert tasks["a"]["state"] == "failed"
    assert "refs/heads/fix" in tasks["a"]["reason"]
    assert tasks["b"]["state"] == "succeeded"


def test_two_plans_whose_names_nest_never_collide_on_branch_names(tmp_path: Path, repo: Path) -> None:
    """Plan "h" has task ``x`` (``pagent/h/x``), plan "h/x" has task ``y`` (``pagent/h/x/y``),
    which git cannot create beside the first. Before issue 12, the second plan's task fails at night
    ("cannot lock ref ... 'refs/heads/pagent/h/x' exists")."""
    first = write_plan(tmp_path / "one", repo, {"x": {}}, name="h")
    second = write_plan(tmp_path / "two", repo, {"y": {}}, name="h/x")
    assert run(first).returncode == 0
    done = run(second)
    assert done.returncode == 0, done.stderr
    assert tasks_by_id(second)["y"]["state"] == "succeeded"


# -- refs the agent should not touch -------------------------------------------------------------


def test_an_agent_repointing_its_worktree_at_the_main_repository_cannot_make_pagent_commit_on_main(
    tmp_path: Path, repo: Path
) -> None:
    """The agent rewrites its worktree's ``.git`` file to ``gitdir: <repo>/.git`` and leaves a
    change. Before issue 12, pagent's own auto-commit lands on ``main`` ("pagent: work left uncommitted by
    a ...") and the task is ``succeeded``."""
    before = git(repo, "rev-parse", "main").strip()
    plan = write_plan(
        tmp_path / "plans", repo, {"a": {"prompt": f"write .git gitdir: {repo}/.git\nwrite w.txt w"}}
    )
    run(plan)
    assert git(repo, "rev-parse", "main").strip() == before
    assert tasks_by_id(plan)["a"]["state"] != "succeeded"


def test_an_agent_cannot_plant_commits_in_the_integration_branch(tmp_path: Path, repo: Path) -> None:
    """The run's integration branch ``integ`` does not exist when the run starts; the agent
    creates it at a commit of its own (not on its task branch). Before issue 12, integration checks that
    branch out and merges onto it: ``integ`` carries the planted ``evil.txt``."""
    prompt = (
        "checkout-new evil\nwrite evil.txt x\ncommit evil\nmove-ref refs/heads/integ\n"
        "checkout pagent/h/a\nwrite w.txt w\ncommit work"
    )
    plan = write_plan(
        tmp_path / "plans", repo, {"a": {"prompt": prompt}}, top={"integrate": {"branch": "integ"}}
    )
    run(plan)
    integration = status_json(plan)["integration"]["branch"]
    assert git(repo, "show", f"{integration}:w.txt") == "w\n"  # the task's work was merged...
    files = git(repo, "ls-tree", "--name-only", integration).split()
    assert "evil.txt" not in files  # ...and nothing else


def test_an_agent_cannot_choose_where_a_later_task_starts(tmp_path: Path, repo: Path) -> None:
    """Wave 1's agent points ``pagent/h/b`` (wave 2's branch, chosen but not yet created) at its
    own commit. Before issue 12, task b checks that branch out and builds on a's work; its diff and the
    overlap list charge a's ``a.txt`` to b."""
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {
            "a": {"prompt": "write a.txt a\ncommit by-a\nmove-ref refs/heads/pagent/h/b"},
            "b": {"prompt": "write b.txt b\ncommit by-b"},
        },
        waves=[["a"], ["b"]],
    )
    run(plan)
    b = tasks_by_id(plan)["b"]
    assert git(repo, "log", "--format=%s", b["branch"]).splitlines() == ["by-b", "initial commit"]
    assert b["diff"]["paths"] == ["b.txt"]
