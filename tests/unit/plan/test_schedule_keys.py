"""The plan keys of issue 19: ``order`` (plan-level) and ``[agents.NAME] account``."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import PlanError
from supervisor.ui.compose import load_plan

TASK = '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "Do a."\n'


def plan_of(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(text + "\n" + TASK)
    return path


def test_order_defaults_to_longest_first_and_takes_plan(tmp_path: Path) -> None:
    assert load_plan(plan_of(tmp_path, "")).order == "longest-first"
    assert load_plan(plan_of(tmp_path, 'order = "plan"')).order == "plan"


def test_an_unknown_order_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(PlanError, match=r"^plan\.toml: order: invalid enum value 'fastest'$"):
        load_plan(plan_of(tmp_path, 'order = "fastest"'))


def test_order_is_not_a_task_setting(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(TASK + 'order = "plan"\n')
    with pytest.raises(PlanError, match=r"waves\[0\]\.tasks\[0\]\.order: unknown key"):
        load_plan(path)


def test_agents_naming_one_account_share_a_gate(tmp_path: Path) -> None:
    agents = (
        '[agents.a1]\ncommand = ["x"]\naccount = "team-a"\n'
        '[agents.a2]\ncommand = ["y"]\naccount = "team-a"\n'
        '[agents.b]\ncommand = ["z"]\n'
    )
    plan = load_plan(plan_of(tmp_path, agents))
    gates = {name: plan.agents[name].gate for name in ("a1", "a2", "b", "claude")}
    assert gates == {"a1": "account team-a", "a2": "account team-a", "b": "agent b", "claude": "agent claude"}


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"a b"', r"agents\.x\.account: use letters, digits, '\.', '_', '-', got 'a b'"),
        ('""', r"agents\.x\.account: expected `str` of length >= 1"),
        ("3", r"agents\.x\.account: expected `str`, got `int`"),
    ],
)
def test_a_bad_account_is_one_line(tmp_path: Path, value: str, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        load_plan(plan_of(tmp_path, f'[agents.x]\ncommand = ["x"]\naccount = {value}\n'))
