"""The ``[executor]`` table: the defaults, Ray's keys, and what cannot run remotely (one line each)."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.errors import PlanError
from supervisor.ui.compose import load_plan

TASK = '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "x"\n'


def plan(tmp_path: Path, executor: str, task: str = "") -> Path:
    path = tmp_path / "plan.toml"
    path.write_text(f"[executor]\n{executor}\n{TASK}{task}\n")
    return path


def test_without_a_table_attempts_run_here(tmp_path: Path) -> None:
    path = tmp_path / "plan.toml"
    path.write_text(TASK)
    assert load_plan(path).executor.kind == "local"


def test_ray_defaults(tmp_path: Path) -> None:
    config = load_plan(plan(tmp_path, 'kind = "ray"')).executor
    assert config.kind == "ray"
    assert config.address is None  # RAY_ADDRESS then
    assert dict(config.resources) == {"agent_slot": 1.0}
    assert (config.remote, config.python, config.start_timeout) == ("origin", "python3", 120.0)


def test_ray_keys(tmp_path: Path) -> None:
    text = (
        'kind = "ray"\naddress = "http://head:8265/"\nresources = { agent_slot = 2, gpu_box = 0.5 }\n'
        'remote = "../shared.git"\npython = "/opt/venv/bin/python"\nstart_timeout = "5m"'
    )
    config = load_plan(plan(tmp_path, text)).executor
    assert config.address == "http://head:8265"
    assert dict(config.resources) == {"agent_slot": 2.0, "gpu_box": 0.5}
    assert config.remote == str((tmp_path / "../shared.git").resolve())  # relative to the plan
    assert (config.python, config.start_timeout) == ("/opt/venv/bin/python", 300.0)


@pytest.mark.parametrize(
    ("executor", "task", "message"),
    [
        ('address = "http://h:8265"', "", "executor.address: only with kind = 'ray'"),
        ('kind = "dask"', "", "executor.kind: invalid enum value 'dask'"),
        ('kind = "ray"\naddress = "h:8265"', "", "executor.address: expected `str` matching regex"),
        ('kind = "ray"\nresources = {}', "", "executor.resources: name at least one resource"),
        ('kind = "ray"\nresources = { CPU = 1 }', "", "executor.resources: 'CPU' is Ray's own"),
        ('kind = "ray"\nresources = { agent_slot = 0 }', "", "executor.resources"),
        (
            'kind = "ray"\nremote = "https://me:hunter2@git.example.com/r.git"',
            "",
            "executor.remote: the URL carries a password",
        ),
        ('kind = "ray"\nstart_timeout = "0s"', "", "executor.start_timeout: expected a duration > 0"),
        ('kind = "ray"\nnodes = 3', "", "executor.nodes: unknown key"),
        ('kind = "ray"', 'isolation = "none"', "waves[0].tasks[0].isolation: 'none' cannot run on Ray"),
    ],
)
def test_what_is_refused(tmp_path: Path, executor: str, task: str, message: str) -> None:
    with pytest.raises(PlanError) as caught:
        load_plan(plan(tmp_path, executor, task))
    text = str(caught.value)
    assert text.startswith("plan.toml: "), text
    assert message in text, text
    assert "\n" not in text
    assert "hunter2" not in text
