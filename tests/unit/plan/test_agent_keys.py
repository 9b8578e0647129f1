"""The kind-specific agent keys (base_url, model, home, idle_timeout) and the optional command.

A kind with a built-in agent lends its command to any agent of that kind that gives none; the
keys are parsed by the plan and judged by the kind when the plan is loaded, each problem one line
naming the file and the key.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import PlanError
from supervisor.ui.compose import load_plan

TASK = '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "Do a."\nagent = "x"\n'


def write(tmp_path: Path, agent: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(f"[agents.x]\n{agent}\n{TASK}", encoding="utf-8")
    return path


def test_an_agent_of_a_kind_with_a_built_in_agent_may_leave_out_its_command(tmp_path: Path) -> None:
    plan = load_plan(
        write(
            tmp_path,
            'kind = "codex"\nbase_url = "http://127.0.0.1:8000/v1"\nmodel = "gpt-5.5"\n'
            'idle_timeout = "90s"\nhome = "user"',
        )
    )
    spec = plan.agents["x"]
    assert spec.command == ("codex", "exec", "--json", "-s", "workspace-write")
    assert (spec.base_url, spec.model, spec.home, spec.idle_timeout) == (
        "http://127.0.0.1:8000/v1",
        "gpt-5.5",
        "user",
        90.0,
    )
    assert spec.preflight is True


def test_a_given_command_is_used_as_is(tmp_path: Path) -> None:
    plan = load_plan(write(tmp_path, 'kind = "gemini"\ncommand = ["./my-gemini", "--flag"]'))
    assert plan.agents["x"].command == ("./my-gemini", "--flag")
    assert plan.agents["x"].home is None  # the kind decides: "user" without base_url


@pytest.mark.parametrize(
    ("agent", "message"),
    [
        ('kind = "plain"', "agents.x: missing required key 'command'"),
        ("", "agents.x: missing required key 'command'"),
        ('kind = "codex"\nbase_url = "127.0.0.1:8000"', "agents.x.base_url: expected `str` matching regex"),
        ('kind = "codex"\nhome = "mine"', "agents.x.home: "),
        (
            'kind = "codex"\nbase_url = "http://h/v1"\nidle_timeout = "0s"',
            "agents.x.idle_timeout: expected a duration > 0",
        ),
        ('kind = "codex"\nbase_url = "http://h/v1"\nidle_timeout = "soon"', "agents.x.idle_timeout: "),
        ('kind = "codex"\nidle_timeout = "1m"', "agents.x.idle_timeout: needs base_url"),
        (
            'kind = "claude"\ncommand = ["claude", "-p"]\nmodel = "opus"',
            "agents.x.model: kind 'claude' does not use",
        ),
        ('command = ["run-x"]\nbase_url = "http://h"', "agents.x.base_url: kind 'plain' does not use"),
        (
            'kind = "gemini"\nbase_url = "http://h"\nhome = "user"',
            'agents.x.home: a base_url needs home = "own"',
        ),
        ('kind = "gemini"\nidle_timeout = "1m"', "agents.x.idle_timeout: Gemini CLI has no setting"),
        ('kind = "opencode"\nbase_url = "http://h/v1"', "agents.x.model: missing: with base_url"),
        ('kind = "opencode"\nmodel = "gpt-5"', "agents.x.model: expected 'provider/model'"),
        ('kind = "opencode"\nextra_args = ["--format", "default"]', "agents.x.extra_args: --format default"),
        ('kind = "codex"\nextra_args = ["--full-auto"]', "agents.x.extra_args: --full-auto no longer exists"),
    ],
)
def test_bad_agent_keys_are_one_line_naming_the_key(tmp_path: Path, agent: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(write(tmp_path, agent))
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"plan.toml: {message}"), text
    assert caught.value.exit_code == 2
