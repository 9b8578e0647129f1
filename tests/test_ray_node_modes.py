"""The node program's modes and records beyond issue 17's first cut, run directly (no Ray):
stderr in ERR records, EXIT before RESULT, the remote's branch checked against where pagent put
it, pins as the executor seam defines them, verify in the workspace an attempt left, scratch
commands, attempt files and kept homes.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from supervisor.launch.node_spec import RecordSplitter
from tests.conftest import git
from tests.test_ray_node import NONCE, make_spec, run_node

pytestmark = [pytest.mark.slow, pytest.mark.ray]


@pytest.fixture
def remote(repo: Path, tmp_path: Path) -> Path:
    """A bare clone of ``repo`` (one commit on main): what the node pushes to."""
    path = tmp_path / "remote.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(path))
    return path


def records(log: Path) -> tuple[bytes, list[tuple[str, dict[str, Any]]]]:
    splitter = RecordSplitter(NONCE)
    out, found = splitter.feed(log.read_bytes())
    return out + splitter.flush(), found


def test_stderr_comes_apart_and_exit_comes_before_result(remote: Path, tmp_path: Path) -> None:
    """The agent's stderr arrives in ERR records (its bytes exact), its stdout as it is; the
    EXIT record (exit code, no leftovers) comes before the RESULT."""
    script = "import sys; sys.stdout.write('out\\n'); sys.stderr.buffer.write(b'err \\xff\\n'); sys.exit(4)"
    code, _ = run_node(make_spec(remote, tmp_path, [sys.executable, "-c", script]), tmp_path / "log")
    assert code == 4
    out, found = records(tmp_path / "log")
    assert out == b"out\n"
    stderr = b"".join(base64.b64decode(p["b"]) for kind, p in found if kind == "ERR")
    assert stderr == b"err \xff\n"
    kinds = [kind for kind, _ in found]
    assert kinds.index("EXIT") < kinds.index("RESULT")
    assert next(p for k, p in found if k == "EXIT") == {
        "exit_code": 4,
        "signal": None,
        "stopped": None,
        "leftovers": 0,
    }


def test_a_remote_branch_someone_moved_is_not_worked_on(remote: Path, tmp_path: Path) -> None:
    """``expect_remote``: the remote's branch must be where pagent put it, else no agent runs."""
    start = git(remote, "rev-parse", "main").strip()
    spec = make_spec(
        remote, tmp_path, ["touch", str(tmp_path / "ran")], expect_remote="0" * 40, start_commit=start
    )
    code, result = run_node(spec, tmp_path / "log")
    assert code == 3
    assert result["phase"] == "setup"
    assert "where pagent put it" in result["error"]
    assert not (tmp_path / "ran").exists()


def test_head_off_the_branch_is_pinned_apart(remote: Path, tmp_path: Path) -> None:
    """An agent that commits on a detached HEAD: the branch's commit is the pin, the HEAD's
    commit the ``-head`` pin (as the executor seam defines them), on the remote and in the
    node's own clone."""
    script = (
        "import subprocess as s; s.run(['git', 'checkout', '-q', '--detach'], check=True);"
        "open('x.txt', 'w').write('x'); s.run(['git', 'add', 'x.txt'], check=True);"
        "s.run(['git', 'commit', '-qm', 'detached work'], check=True)"
    )
    code, result = run_node(make_spec(remote, tmp_path, [sys.executable, "-c", script]), tmp_path / "log")
    assert code == 0
    assert result["on_branch"] is False
    pin = git(remote, "rev-parse", "refs/pagent/r1/t1/1").strip()
    head = git(remote, "rev-parse", "refs/pagent/r1/t1/1-head").strip()
    assert pin == result["branch_head"] != head == result["head"]
    node_clone = Path(result["workspace"])
    assert git(node_clone, "rev-parse", "refs/pagent/r1/t1/1-head").strip() == head


def test_verify_mode_runs_in_the_workspace_the_attempt_left(remote: Path, tmp_path: Path) -> None:
    """Mode verify on the same node: the workspace as the attempt left it (an ignored file
    included), nothing committed or pushed; its exit code is the result's."""
    agent = (
        "import subprocess as s; open('.gitignore', 'w').write('build/\\n');"
        "import os; os.makedirs('build'); open('build/dep', 'w').write('d');"
        "s.run(['git', 'add', '.gitignore'], check=True);"
        "s.run(['git', 'commit', '-qm', 'ignore'], check=True)"
    )
    _, first = run_node(make_spec(remote, tmp_path, [sys.executable, "-c", agent]), tmp_path / "log1")
    refs_before = git(remote, "for-each-ref")
    check = "import os, sys; print('dep' if os.path.exists('build/dep') else 'none'); sys.exit(6)"
    verify = make_spec(
        remote,
        tmp_path,
        [sys.executable, "-c", check],
        mode="verify",
        start_commit=first["branch_head"],
        start_ref="refs/pagent/r1/t1/1",
    )
    code, result = run_node(verify, tmp_path / "log2")
    assert code == 6
    assert result["exit_code"] == 6
    assert result["workspace_kept"] is True
    assert records(tmp_path / "log2")[0].strip() == b"dep"
    assert git(remote, "for-each-ref") == refs_before


def test_scratch_mode_runs_without_git_in_a_directory_of_its_own(remote: Path, tmp_path: Path) -> None:
    """Mode scratch (an agent's --version, a preflight prompt): no remote, no branch, its prompt
    on stdin, a fresh directory that is gone afterwards."""
    script = "import os, sys; print(sys.stdin.read().strip(), os.listdir('.'), os.getcwd())"
    argv = [sys.executable, "-c", script]
    spec = dataclasses.replace(
        make_spec(remote, tmp_path, argv, mode="scratch", prompt="hello\n"),
        remote="",
        branch="",
        start_commit="",
    )
    code, result = run_node(spec, tmp_path / "log")
    assert code == 0
    out = records(tmp_path / "log")[0].decode()
    assert out.startswith("hello [] ")
    assert not Path(out.split()[-1]).exists()
    assert result["error"] is None


def test_attempt_files_and_kept_homes_are_made_where_the_agent_runs(remote: Path, tmp_path: Path) -> None:
    """``files`` go into a private directory of the attempt (``{attempt_dir}``), removed at the
    end; ``{agent_home}`` is kept under the node cache; PWD is the agent's directory."""
    script = (
        "import json, os; conf = os.environ['CONF'];"
        "top = os.path.dirname(os.path.dirname(conf));"
        "print(json.dumps([conf, open(conf).read(), oct(os.stat(top).st_mode),"
        " os.environ['HOME_DIR'], os.environ['PWD'] == os.getcwd()]))"
    )
    env = {
        "CONF": "{attempt_dir}/cfg/settings.json",
        "HOME_DIR": "{agent_home}/x",
        "PAGENT_TEST_MARK": "none",
    }
    files = {"cfg/settings.json": base64.b64encode(b'{"a": 1}').decode()}
    spec = make_spec(remote, tmp_path, [sys.executable, "-c", script], files=files, home="gem", env=env)
    code, _ = run_node(spec, tmp_path / "log")
    assert code == 0
    conf, content, mode, home, pwd = json.loads(records(tmp_path / "log")[0].decode().strip().splitlines()[0])
    assert content == '{"a": 1}'
    assert mode.endswith("700")
    assert not Path(conf).parent.parent.exists()  # the attempt's own directory is gone
    assert home == str(tmp_path / "cache" / "homes" / "gem" / "x")
    assert (tmp_path / "cache" / "homes" / "gem").is_dir()
    assert pwd is True
