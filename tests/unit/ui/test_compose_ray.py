"""Composing the Ray executor: without the ``ray`` extra a plan asking for Ray is a plan error
(exit 2, one line), and composing never imports Ray itself (``pagent validate`` stays fast).

"Without the extra" is simulated by ``sys.modules["ray"] = None``, which makes Python report the
package as not installed (``importlib.util.find_spec`` answers None, ``import ray`` fails): the
tests cannot uninstall a package for the length of one test.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from supervisor.errors import EXIT_USAGE, PlanError
from supervisor.ui.compose import executor_for, load_plan

PLAN = (
    '[executor]\nkind = "ray"\naddress = "http://127.0.0.1:1"\n'
    + '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "x"\n'
)


def test_without_the_extra_a_ray_plan_is_a_plan_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    plan = load_plan(path)
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(PlanError) as caught:
        executor_for(plan)
    assert caught.value.exit_code == EXIT_USAGE
    assert str(caught.value) == (
        "plan.toml: executor.kind: 'ray' needs the ray extra (missing: ray): pip install 'pagent-run[ray]'"
    )


def test_without_an_address_a_ray_plan_is_a_plan_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.replace('address = "http://127.0.0.1:1"\n', ""))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with pytest.raises(PlanError, match=r"executor\.address: not set, and neither is RAY_ADDRESS"):
        executor_for(load_plan(path))


def test_composing_does_not_import_ray_nor_ask_the_cluster(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(PLAN)
    had_ray = "ray" in sys.modules
    executor = executor_for(load_plan(path))  # nobody answers at 127.0.0.1:1: never asked here
    assert executor.capacity_limit() is None
    assert executor.capacity_problem(512 * 2**20) is None
    assert "unconfined" in (executor.confinement_problem() or "")
    assert ("ray" in sys.modules) == had_ray
