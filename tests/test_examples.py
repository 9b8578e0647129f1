"""The shipped plans stay valid: the reference plan in configs/ and the examples."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.ui.compose import load_plan

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("path", sorted([*ROOT.glob("configs/*.toml"), *ROOT.glob("examples/*/plan.toml")]))
def test_shipped_plan_is_valid(path: Path) -> None:
    """Every plan the repository ships loads without error and has at least one task."""
    plan = load_plan(path)
    assert plan.tasks


def test_reference_plan_documents_every_setting() -> None:
    """configs/plan.toml mentions every key a task setting can have."""
    from dataclasses import fields

    from supervisor.plan.model import TaskSettings

    text = (ROOT / "configs" / "plan.toml").read_text()
    missing = [f.name for f in fields(TaskSettings) if f"{f.name} =" not in text]
    assert missing == []
