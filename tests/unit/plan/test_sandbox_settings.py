"""The sandbox's plan keys: defaults, what implies what, what is refused (one line each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import PlanError
from supervisor.ui.compose import load_plan


def plan(tmp_path: Path, defaults: str = "", task: str = "") -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(f'[defaults]\n{defaults}\n[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "x"\n{task}\n')
    return path


def test_defaults_sandbox_off_on_a_worktree(tmp_path: Path) -> None:
    settings = load_plan(plan(tmp_path)).tasks[0].settings
    assert (settings.sandbox, settings.workspace, settings.sandbox_network) == (False, "worktree", True)


@pytest.mark.parametrize("value", ["true", '"auto"'])
def test_the_sandbox_implies_a_clone(tmp_path: Path, value: str) -> None:
    settings = load_plan(plan(tmp_path, f"sandbox = {value}")).tasks[0].settings
    assert settings.workspace == "clone"
    assert settings.sandbox == (True if value == "true" else "auto")


def test_a_clone_without_the_sandbox_and_narrowing_a_kinds_path(tmp_path: Path) -> None:
    text = 'workspace = "clone"\nagent = "claude"\nsandbox_writable = ["!~/.claude.json", "~/.npm/"]'
    settings = load_plan(plan(tmp_path, text)).tasks[0].settings
    assert settings.workspace == "clone"
    assert settings.sandbox_writable == ("!~/.claude.json", "~/.npm/")


@pytest.mark.parametrize(
    ("defaults", "task", "message"),
    [
        (
            "sandbox = true",
            'workspace = "worktree"',
            "waves[0].tasks[0].sandbox (from [defaults]): needs workspace = 'clone'",
        ),
        ("sandbox = true", 'isolation = "none"', "sandbox (from [defaults]): needs isolation = 'worktree'"),
        ("", "sandbox_network = false", "waves[0].tasks[0].sandbox_network: needs sandbox = true or 'auto'"),
        (
            'workspace = "clone"',
            'isolation = "none"',
            "workspace (from [defaults]): needs isolation = 'worktree'",
        ),
        ('sandbox_writable = ["cache/"]', "", "defaults.sandbox_writable: expected an absolute path"),
        ('sandbox_writable = ["/"]', "", "is the whole file system"),
        ('sandbox_writable = ["!~/.gemini/"]', "", "takes away none of the agent kind's state paths"),
        ('sandbox = "yes"', "", "defaults.sandbox: "),
    ],
)
def test_settings_that_cannot_work_are_refused(
    tmp_path: Path, defaults: str, task: str, message: str
) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(plan(tmp_path, defaults, task))
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)
