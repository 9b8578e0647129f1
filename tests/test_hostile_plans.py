"""Hostile plans: what ``pagent validate`` accepts must not fail (or crash, or hang) at night.

Issue 12 promises that validation catches at load time whatever would fail at run time (NUL
and '=' in env and argv, ``done_marker``/``workdir`` naming ``.git`` or a directory, ids and
branch names git rejects, prefix clashes, memory no machine has, an integration branch
colliding with a task branch), and that nothing ``validate`` accepts ends in "internal error".
Prompts and prompt files are in ``test_hostile_prompts``. Every case runs the installed
``pagent``/``pagent-run`` on a real repository; each case was written
first against code that did not hold it (issue 12); the fixes made every one hold.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import tomli
import tomli_w

from tests.conftest import git, status_json
from tests.hostile import never_crashes, one_line_error, pagent, rejected, run, write_plan

pytestmark = pytest.mark.slow  # real processes (README, "Tests")


def _one_task(tmp_path: Path, repo: Path, **task: Any) -> Path:
    return write_plan(tmp_path / "plans", repo, {"a": task})


# -- env and argv --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("agents", "task", "key"),
    [
        pytest.param({"env": {"K": "a\0b"}}, {}, "agents.rogue.env", id="nul-in-env-value"),
        pytest.param({"env": {"A=B": "x"}}, {}, "agents.rogue.env", id="equals-in-env-name"),
        pytest.param({}, {"extra_args": ["a\0b"]}, "waves[0].tasks[0].extra_args", id="nul-in-extra-args"),
        pytest.param({"extra_args": ["--x\0"]}, {}, "agents.rogue.extra_args", id="nul-in-agent-args"),
    ],
)
def test_nul_and_equals_in_env_and_argv_are_plan_errors(
    tmp_path: Path, repo: Path, agents: dict[str, Any], task: dict[str, Any], key: str
) -> None:
    """Before issue 12, these validate, then Popen raises ValueError ("embedded null byte", "illegal
    environment variable name"): internal error, the task left ``running``."""
    rogue = {"command": ["{python}", str(Path(__file__).parent / "agents" / "rogue.py")], **agents}
    plan = write_plan(tmp_path / "plans", repo, {"a": task}, agents={"rogue": rogue})
    rejected(plan, key)


def test_nul_in_the_program_name_is_a_plan_error(tmp_path: Path, repo: Path) -> None:
    """Before issue 12, it validates and every attempt fails at night with ``launch-failed``."""
    plan = write_plan(
        tmp_path / "plans", repo, {"a": {"agent": "bad"}}, agents={"bad": {"command": ["pyth\0on"]}}
    )
    rejected(plan, "agents.bad.command")


# -- done_marker and workdir ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        pytest.param("done_marker", ".git", id="done_marker-.git"),
        pytest.param("done_marker", ".", id="done_marker-dot"),
        pytest.param("done_marker", "sub/", id="done_marker-trailing-slash"),
        pytest.param("workdir", ".git", id="workdir-.git"),
        pytest.param("workdir", ".git/hooks", id="workdir-in-.git"),
    ],
)
def test_done_marker_and_workdir_naming_git_or_a_directory_are_plan_errors(
    tmp_path: Path, repo: Path, setting: str, value: str
) -> None:
    """Today: done_marker '.git' makes pagent unlink the worktree's .git file (then GitError,
    internal error); '.' raises IsADirectoryError in remove_marker (internal error, task left
    pending); workdir '.git' fails the task at night ("worktree: [Errno 17] File exists")."""
    rejected(_one_task(tmp_path, repo, **{setting: value}), f"waves[0].tasks[0].{setting}")


def test_a_done_marker_the_agent_made_a_directory_does_not_crash_the_run(tmp_path: Path, repo: Path) -> None:
    """The agent creates ``done/`` (a directory) where the marker file belongs: the attempt may
    fail (``no-done-marker``), the run must not crash."""
    plan = _one_task(tmp_path, repo, prompt="write done/x.txt x\ncommit x", done_marker="done")
    view = never_crashes(plan)
    assert view["tasks"][0]["state"] == "failed"


def test_a_workdir_that_is_a_file_of_the_repository_fails_the_task_clearly(
    tmp_path: Path, repo: Path
) -> None:
    """Holds: ``workdir = "README.md"`` (a file at base) fails the task with a reason naming
    the path; nothing crashes."""
    view = never_crashes(_one_task(tmp_path, repo, workdir="README.md"))
    task = view["tasks"][0]
    assert task["state"] == "failed"
    assert "README.md" in task["reason"]


def test_a_workdir_through_a_symlink_in_the_repository_does_not_leave_the_worktree(
    tmp_path: Path, repo: Path
) -> None:
    """The repository commits ``link -> <outside>``; ``workdir = "link"`` puts the agent's cwd
    outside its worktree, and today its writes land there while the task ``succeeded``."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "link").symlink_to(outside)
    git(repo, "add", "link")
    git(repo, "commit", "--quiet", "-m", "a symlink to elsewhere")
    plan = _one_task(tmp_path, repo, prompt="write escaped.txt x", workdir="link")
    done = run(plan)
    assert "internal error" not in done.stderr
    assert not (outside / "escaped.txt").exists()


# -- ids and branch names ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tasks", "key"),
    [
        pytest.param({"a" * 250: {}}, "waves[0].tasks[0].id", id="id-too-long-for-a-log-file-name"),
        pytest.param({"a": {"branch": "b" * 300}}, "waves[0].tasks[0].branch", id="branch-too-long"),
        pytest.param(
            {"a": {"branch": "feat"}, "b": {"branch": "feat/b"}}, "waves[0].tasks[1].branch", id="a-and-a/b"
        ),
        pytest.param(
            {"a": {"branch": "pagent/h/b/c"}, "b": {}}, "waves[0].tasks", id="explicit-under-a-default-branch"
        ),
    ],
)
def test_ids_and_branch_names_git_rejects_are_plan_errors(
    tmp_path: Path, repo: Path, tasks: dict[str, dict[str, Any]], key: str
) -> None:
    """Today: a 250-character id validates and crashes the run (the prompt file name
    '<id>.1.txt' is too long: internal error); a 300-character branch and the prefix clashes
    validate and fail a task at night ("cannot lock ref ...: 'refs/heads/feat' exists")."""
    rejected(write_plan(tmp_path / "plans", repo, tasks), key)


def test_an_explicit_branch_equal_to_another_tasks_default_gets_its_own_branch(
    tmp_path: Path, repo: Path
) -> None:
    """Holds: task a asks for ``pagent/h/b`` (task b's default): both succeed on distinct
    branches, each with its own work."""
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": {"branch": "pagent/h/b", "prompt": "write a.txt a"}, "b": {"prompt": "write b.txt b"}},
    )
    view = never_crashes(plan)
    branches = {t["id"]: t["branch"] for t in view["tasks"]}
    assert view["status"] == "succeeded"
    assert branches["a"] != branches["b"]
    assert git(repo, "show", f"{branches['a']}:a.txt") == "a\n"
    assert git(repo, "show", f"{branches['b']}:b.txt") == "b\n"


@pytest.mark.parametrize(
    "branch",
    [
        pytest.param("pagent/h/a", id="same-as-a-task-branch"),
        pytest.param("pagent/h", id="prefix-of-task-branches"),
    ],
)
def test_an_integration_branch_colliding_with_a_task_branch_is_a_plan_error(
    tmp_path: Path, repo: Path, branch: str
) -> None:
    """Before issue 12, the run exits 0 and the integration is silently "skipped" (a warning line)."""
    plan = write_plan(
        tmp_path / "plans", repo, {"a": {"prompt": "write a.txt a"}}, top={"integrate": {"branch": branch}}
    )
    rejected(plan, "integrate.branch")


# -- limits --------------------------------------------------------------------------------------


def test_min_free_memory_no_machine_has_ends_the_run_at_once(tmp_path: Path, repo: Path) -> None:
    """``min_free_memory = "1000T"``: today it validates and ``pagent-run`` waits for ever
    ("waiting for memory" once, then nothing). Promised: a plan error (exit 2) at once."""
    plan = _one_task(tmp_path, repo, min_free_memory="1000T")
    try:
        done = run(plan, timeout=5)
    except subprocess.TimeoutExpired:
        pytest.fail("pagent-run was still waiting for memory after 5 s")
    assert done.returncode == 2
    assert one_line_error(done)


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("setting", ["timeout", "stall_timeout", "kill_grace", "retry_delay"])
def test_nan_and_inf_durations_are_plan_errors(
    tmp_path: Path, repo: Path, setting: str, value: float
) -> None:
    """Holds: TOML's nan and inf would disable a limit; they are refused with exit 2."""
    plan = _one_task(tmp_path, repo)
    table = tomli.loads(plan.read_text())
    table["waves"][0]["tasks"][0][setting] = value
    plan.write_text(tomli_w.dumps(table))
    rejected(plan, f"waves[0].tasks[0].{setting}")


# -- checks that silently do nothing -------------------------------------------------------------


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"verify": ["false"]}, id="verify-false"),
        pytest.param({"done_marker": ".never-created"}, id="done_marker-never-created"),
        pytest.param({"require_changes": True}, id="require_changes-without-changes"),
    ],
)
def test_checks_with_isolation_none_are_enforced_or_refused(
    tmp_path: Path, repo: Path, settings: dict[str, Any]
) -> None:
    """With ``isolation = "none"`` taskrun._attempt runs no check at all: ``verify = ["false"]``,
    a marker never created or ``require_changes`` without changes still end ``succeeded``.
    Promised: the check holds, or the plan is refused (exit 2)."""
    plan = _one_task(tmp_path, repo, prompt="sleep 0", isolation="none", **settings)
    if pagent("validate", plan).returncode == 2:
        return
    done = run(plan)
    assert done.returncode == 1, done.stderr
    assert status_json(plan)["tasks"][0]["state"] == "failed"


def test_a_bare_repository_is_a_plan_error(tmp_path: Path, repo: Path) -> None:
    """Holds: ``repo`` naming a bare clone exits 2 with one line (no worktree to start from)."""
    bare = tmp_path / "bare.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(repo), str(bare)], check=True, timeout=30)
    plan = write_plan(tmp_path / "plans", bare, {"a": {}})
    done = run(plan)
    assert done.returncode == 2
    assert one_line_error(done), done.stderr
