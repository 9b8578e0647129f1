"""A Ray plan through the installed ``pagent`` and ``pagent-run`` where no cluster is needed: what
is refused before anything is created (one line each, exit 2), an unreachable cluster (exit 1),
``--dry-run``. "Without the ray extra" is simulated by a ``sitecustomize`` that sets
``sys.modules["ray"] = None`` (Python then reports the package as not installed): a test cannot
uninstall a package.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

import pytest
import tomli_w

from tests.conftest import bin_path, cli, git
from tests.hostile import one_line_error, pagent, run

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def plan(tmp_path: Path, repo: Path) -> Path:
    """A Ray plan on ``repo`` (with an ``origin``) whose address nobody answers."""
    git(repo, "remote", "add", "origin", str(tmp_path / "origin.git"))
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(tmp_path / "origin.git"))
    table = {
        "repo": os.path.relpath(repo, tmp_path),
        "executor": {"kind": "ray", "address": f"http://127.0.0.1:{free_port()}", "python": sys.executable},
        "agents": {"a": {"command": ["{python}", "-c", "print('hi')"]}},
        "defaults": {"agent": "a", "min_free_memory": 0},
        "waves": [{"tasks": [{"id": "t", "prompt": "x"}]}],
    }
    path = tmp_path / "plan.toml"
    path.write_text(tomli_w.dumps(table))
    return path


def without_ray(tmp_path: Path) -> dict[str, str]:
    site = tmp_path / "no-ray"
    site.mkdir(exist_ok=True)
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['ray'] = None\n")
    return {**os.environ, "PYTHONPATH": str(site)}


def test_validate_accepts_a_ray_plan_without_asking_the_cluster(plan: Path) -> None:
    started = time.monotonic()
    done = pagent("validate", plan)
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 10  # no Ray import, no connection


def test_without_the_extra_validate_and_run_exit_2_with_one_line(plan: Path, tmp_path: Path) -> None:
    env = without_ray(tmp_path)
    for command in (["pagent", "validate"], ["pagent-run"]):
        done = cli(bin_path(command[0]), *command[1:], plan, env=env)
        assert done.returncode == 2, done.stderr
        assert one_line_error(done), done.stderr
        assert "needs the ray extra" in done.stderr
        assert "pip install 'pagent-run[ray]'" in done.stderr
    assert not (tmp_path / ".pagent" / "state.db").exists()


def test_the_sandbox_cannot_run_on_ray(plan: Path) -> None:
    plan.write_text(plan.read_text().replace("[defaults]\n", "[defaults]\nsandbox = true\n"))
    done = pagent("validate", plan)
    assert done.returncode == 2
    assert one_line_error(done), done.stderr
    assert "sandbox: no sandbox here: the Ray executor runs attempts unconfined" in done.stderr
    plan.write_text(plan.read_text().replace("sandbox = true", 'sandbox = "auto"'))
    done = pagent("validate", plan)
    assert done.returncode == 0
    assert "sandbox = 'auto' tasks will run unconfined: t" in done.stderr


def test_an_unreachable_cluster_exits_1_with_one_line(plan: Path) -> None:
    done = run(plan)
    assert done.returncode == 1, done.stderr
    assert one_line_error(done), done.stderr
    assert "cannot reach the Ray Jobs API at http://127.0.0.1:" in done.stderr


def test_a_missing_remote_exits_2_before_anything_runs(plan: Path, repo: Path) -> None:
    git(repo, "remote", "remove", "origin")
    done = run(plan)
    assert done.returncode == 2, done.stderr
    assert one_line_error(done), done.stderr
    assert "executor.remote: no remote 'origin' in" in done.stderr


def test_dry_run_names_the_cluster(plan: Path) -> None:
    done = run(plan, "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "executor: ray at http://127.0.0.1:" in done.stdout
    assert "each attempt needs agent_slot=1, branches via origin" in done.stdout
