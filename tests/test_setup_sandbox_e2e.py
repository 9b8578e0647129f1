"""The workspace's hooks and copies under ``sandbox = true`` (real bubblewrap, clone workspaces):
``setup``, ``before_attempt`` and ``teardown`` run what the agent may have written, so they are
confined like the agent; ``copy`` and ``.worktreeinclude`` reach a clone as they reach a worktree,
and are never committed there either. Skipped, with the reason, where bwrap cannot run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import git
from tests.hostile import pagent, run, tasks_by_id
from tests.test_sandbox_e2e import _needs_bwrap, main, plan_of, root

pytestmark = pytest.mark.slow  # real processes (README, "Tests")
__all__ = ["_needs_bwrap", "main", "root"]  # the sandbox tests' fixtures, used here too


def test_hooks_are_confined_and_copies_reach_clones(root: Path, main: Path) -> None:
    (main / ".gitignore").write_text(".env\n")
    (main / ".worktreeinclude").write_text(".env\n")
    git(main, "add", ".gitignore", ".worktreeinclude")
    git(main, "commit", "--quiet", "-m", "include .env")
    (main / ".env").write_text("TOKEN=abc\n")
    (main / "config.local").write_text("port = 1\n")
    escape = main / "written-by-a-hook"
    tool = "import pathlib; pathlib.Path('tool.txt').write_text('built')"
    plan = plan_of(
        root,
        main,
        {
            "hooked": {"prompt": "write a.txt a", "setup": [[sys.executable, "-c", tool]]},
            "escaping": {
                "prompt": "write b.txt b",
                "setup": [[sys.executable, "-c", f"open({str(escape)!r}, 'w').write('out')"]],
            },
        },
        copy=["config.local"],
        teardown=[[sys.executable, "-c", f"open({str(escape)!r}, 'w').write('out')"]],
    )
    done = run(plan)
    assert done.returncode == 1, done.stderr
    tasks = tasks_by_id(plan)
    hooked, escaping = tasks["hooked"], tasks["escaping"]
    assert (hooked["state"], hooked["reason"]) == ("succeeded", "ok")
    clone_dir = Path(hooked["worktree"])
    assert (clone_dir / "tool.txt").read_text() == "built"
    assert (clone_dir / ".env").read_text() == "TOKEN=abc\n"
    assert (clone_dir / "config.local").read_text() == "port = 1\n"
    files = git(main, "ls-tree", "-r", "--name-only", hooked["branch"]).split()
    assert ".env" not in files
    assert "config.local" not in files
    assert "a.txt" in files
    assert escaping["state"] == "failed"
    assert escaping["reason"].startswith("setup: `")
    assert "Read-only file system" in Path(escaping["log"]).read_text()
    assert not escape.exists()

    cleaned = pagent("clean", plan)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 2 worktree(s)" in cleaned.stdout
    warnings = cleaned.stderr.strip().splitlines()
    assert len(warnings) == 2
    assert all(line.startswith("pagent: warning: teardown of ") for line in warnings)
    assert not escape.exists()  # the teardown was confined too
