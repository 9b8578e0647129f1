"""The results issue end to end: diff stats, auto-commit, verify, overlaps, integration,
dependencies and stacking, the report — on the installed CLI and a real repository."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import bin_path, cli, git, status_json

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

EDITOR = Path(__file__).parent / "agents" / "editor.py"


def write_plan(plans: Path, tasks: list[tuple[int, str, str, str]], extra: str = "") -> Path:
    """``tasks``: (wave, id, prompt, extra TOML for the task)."""
    plans.mkdir(exist_ok=True)
    lines = [
        f'repo = "../repo"\njobs = 2\n{extra}',
        '[defaults]\nagent = "editor"\nretries = 0\nretry_delay = "0.1s"',
        f'[agents.editor]\ncommand = ["{{python}}", "{EDITOR}"]',
    ]
    current = -1
    for wave, task_id, prompt, more in tasks:
        if wave != current:
            lines.append(f'[[waves]]\nname = "w{wave}"')
            current = wave
        lines.append(f'[[waves.tasks]]\nid = "{task_id}"\nprompt = """{prompt}"""\n{more}')
    path = plans / "plan.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_results_of_a_two_wave_plan(tmp_path: Path, repo: Path) -> None:
    """The 'done when' of the results issue, task by task."""
    (repo / "shared.txt").write_text("original\n")
    git(repo, "add", "shared.txt")
    git(repo, "commit", "-q", "-m", "shared file")
    plan = write_plan(
        tmp_path / "plans",
        [
            (1, "two-files", "write a.txt 3\nwrite src/b.txt 5\ncommit two files", ""),
            (1, "uncommitted", "write left.txt 2", ""),
            (1, "verify-fails", "write v.txt 1\ncommit v", 'verify = ["false"]\nretries = 1'),
            (1, "edit-a", "line shared.txt from a\ncommit a", ""),
            (1, "edit-b", "line shared.txt from b\ncommit b", ""),
            (1, "stacked", "write c.txt 1\ncommit c", 'depends_on = ["two-files"]\nstack = true'),
            (1, "needs-failed", "write d.txt 1\ncommit d", 'depends_on = ["verify-fails"]'),
            (2, "later", "write e.txt 1\ncommit e", ""),
        ],
        extra='[integrate]\nbranch = "pagent/integration"',
    )
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 1, done.stderr
    view = status_json(plan)
    tasks = {t["id"]: t for t in view["tasks"]}

    two = tasks["two-files"]["diff"]
    assert (two["commits"], two["files"], two["insertions"], two["deletions"]) == (1, 2, 8, 0)
    assert sorted(two["paths"]) == ["a.txt", "src/b.txt"]
    assert two["uncommitted"] is False

    left = tasks["uncommitted"]
    assert left["state"] == "succeeded"
    assert git(repo, "show", f"{left['branch']}:left.txt") == "line 0\nline 1\n"
    assert "pagent: work left uncommitted by uncommitted" in git(
        repo, "log", "-1", "--format=%s", left["branch"]
    )
    assert left["diff"]["files"] == 1

    assert (tasks["verify-fails"]["state"], tasks["verify-fails"]["reason"]) == ("failed", "verify")
    assert tasks["verify-fails"]["attempts"] == 2
    verify_log = cli(bin_path("pagent"), "logs", plan, "verify-fails").stdout
    assert "[pagent] verify: false" in verify_log
    assert "[pagent] verify: exit 1" in verify_log

    assert {"tasks": ["edit-a", "edit-b"], "paths": ["shared.txt"]} in view["overlaps"]
    merges = {m["task"]: m for m in view["integration"]["merges"]}
    states = {tasks["edit-a"]["state"], tasks["edit-b"]["state"]}
    assert states == {"succeeded", "conflict"}
    loser = "edit-a" if tasks["edit-a"]["state"] == "conflict" else "edit-b"
    assert tasks[loser]["conflicts"] == ["shared.txt"]
    assert merges[loser]["merged"] is False
    integration = view["integration"]["branch"]
    assert git(repo, "show", f"{integration}:a.txt").startswith("line 0")
    # Task branches and base are never rewritten: each still holds only its own commit.
    assert git(repo, "rev-list", "--count", f"main..{tasks[loser]['branch']}").strip() == "1"

    stacked_log = git(repo, "log", "--format=%s", tasks["stacked"]["branch"])
    assert "two files" in stacked_log.splitlines()
    assert tasks["stacked"]["diff"]["paths"] == ["c.txt"]

    assert (tasks["needs-failed"]["state"], tasks["needs-failed"]["reason"]) == (
        "not_run",
        "dependency verify-fails failed",
    )
    assert tasks["later"]["state"] == "not_run"

    report = plan.parent / ".pagent" / "runs" / view["run_id"] / "report.html"
    html = report.read_text()
    for task_id in tasks:
        assert task_id in html
    path = cli(bin_path("pagent"), "report", plan)
    assert path.returncode == 0
    assert path.stdout.strip() == str(report)
