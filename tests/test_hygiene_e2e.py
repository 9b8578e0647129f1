"""Prompts and task hygiene on the installed CLI: context files, templates, previous_failure,
completion markers and confinement."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bin_path, cli, git, status_json

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

EDITOR = Path(__file__).parent / "agents" / "editor.py"


def make_plan(plans: Path, tasks: str, extra: str = "") -> Path:
    plans.mkdir(exist_ok=True)
    path = plans / "plan.toml"
    path.write_text(
        f'repo = "../repo"\n{extra}\n'
        '[defaults]\nagent = "editor"\nretries = 0\nretry_delay = "0.1s"\n'
        f'[agents.editor]\ncommand = ["{{python}}", "{EDITOR}"]\n' + tasks
    )
    return path


def tasks_of(plan: Path) -> dict[str, dict[str, Any]]:
    return {t["id"]: t for t in status_json(plan)["tasks"]}


def prompt_of(plan: Path, task: dict[str, Any], attempt: int) -> str:
    run_dir = Path(task["log"]).parent.parent
    return (run_dir / "prompts" / f"{task['id']}.{attempt}.txt").read_text()


def test_context_files_and_placeholders(tmp_path: Path, repo: Path) -> None:
    """Plan and wave context come first, verbatim; the task's template is filled per attempt."""
    plans = tmp_path / "plans"
    plans.mkdir()
    (plans / "context.md").write_text("Conventions: tabs, not {spaces}.\n")
    (plans / "wave.md").write_text("Wave rule: touch only docs/.\n")
    plan = make_plan(
        plans,
        '''
[[waves]]
name = "docs"
context_file = "wave.md"
[[waves.tasks]]
id = "t1"
prompt = """task {task_id} in wave {wave} on {branch} from {base}, \\
  attempt {attempt}, in {worktree}. Literal: {{braces}}"""
''',
        extra='context_file = "context.md"',
    )
    assert cli(bin_path("pagent-run"), plan).returncode == 0
    task = tasks_of(plan)["t1"]
    text = prompt_of(plan, task, 1)
    assert text == (
        "Conventions: tabs, not {spaces}.\n\n-----\n\nWave rule: touch only docs/.\n\n-----\n\n"
        f"task t1 in wave docs on {task['branch']} from HEAD, attempt 1, in {task['worktree']}. "
        "Literal: {braces}"
    )


def test_previous_failure_reaches_the_retry(tmp_path: Path, repo: Path) -> None:
    """On a retry, {previous_failure} holds the last attempt's reason and the end of its log."""
    plan = make_plan(
        tmp_path / "plans",
        '''
[[waves]]
[[waves.tasks]]
id = "flaky"
retries = 1
prompt = """fail-on-attempt 1
line out.txt done
commit out
Before: {previous_failure}"""
''',
    )
    assert cli(bin_path("pagent-run"), plan).returncode == 0
    task = tasks_of(plan)["flaky"]
    assert task["attempts"] == 2
    assert prompt_of(plan, task, 1).endswith("Before: ")
    second = prompt_of(plan, task, 2)
    assert "The previous attempt failed: exit 3." in second
    assert "boom on attempt 1" in second


def test_done_marker_required_and_never_committed(tmp_path: Path, repo: Path) -> None:
    """With done_marker, success needs the marker; the marker is removed and never committed."""
    plan = make_plan(
        tmp_path / "plans",
        """
[defaults.extra]
[[waves]]
[[waves.tasks]]
id = "marks"
done_marker = ".task-complete"
prompt = "line work.txt x\\nmarker .task-complete"
[[waves.tasks]]
id = "forgets"
done_marker = ".task-complete"
prompt = "line work.txt y"
""".replace("[defaults.extra]\n", ""),
    )
    assert cli(bin_path("pagent-run"), plan).returncode == 1
    tasks = tasks_of(plan)
    assert tasks["marks"]["state"] == "succeeded"
    assert (tasks["forgets"]["state"], tasks["forgets"]["reason"]) == ("failed", "no-done-marker")
    for task in tasks.values():
        assert not (Path(task["worktree"]) / ".task-complete").exists()
        files = git(Path(task["worktree"]), "ls-tree", "-r", "--name-only", "HEAD").split()
        assert ".task-complete" not in files
        assert "work.txt" in files  # auto-committed, marker excluded


def test_confined_workdir(tmp_path: Path, repo: Path) -> None:
    """confine = true: a change outside workdir fails the attempt, naming the path."""
    plan = make_plan(
        tmp_path / "plans",
        """
[[waves]]
[[waves.tasks]]
id = "inside"
workdir = "apps/users"
confine = true
prompt = "line api.py ok"
[[waves.tasks]]
id = "outside"
workdir = "apps/users"
confine = true
prompt = "line api.py ok\\nline ../../README.md changed"
""",
    )
    assert cli(bin_path("pagent-run"), plan).returncode == 1
    tasks = tasks_of(plan)
    assert tasks["inside"]["state"] == "succeeded"
    assert tasks["inside"]["diff"]["paths"] == ["apps/users/api.py"]
    assert (tasks["outside"]["state"], tasks["outside"]["reason"]) == ("failed", "outside-workdir")
    assert tasks["outside"]["detail"]["outside_workdir"] == ["README.md"]


def test_unknown_placeholder_is_a_plan_error(tmp_path: Path, repo: Path) -> None:
    """An unknown placeholder exits 2 naming it, before anything exists."""
    plan = make_plan(tmp_path / "plans", '[[waves]]\n[[waves.tasks]]\nid = "t"\nprompt = "fix {ticket}"\n')
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 2
    assert done.stderr.startswith("pagent: plan.toml: waves[0].tasks[0].prompt: unknown placeholder {ticket}")
    assert not (plan.parent / ".pagent").exists()
