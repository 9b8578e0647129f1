"""Shared fixtures: real git repositories in tmp_path and the installed console scripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

# The one loopback Ray head of a test session (one head, whichever modules use it).
from tests.ray_head import ray_head_fixture  # noqa: F401

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "pagent tests",
    "GIT_AUTHOR_EMAIL": "tests@pagent.invalid",
    "GIT_COMMITTER_NAME": "pagent tests",
    "GIT_COMMITTER_EMAIL": "tests@pagent.invalid",
}


def bin_path(name: str) -> Path:
    """An installed console script of this package (beside the running interpreter)."""
    return Path(sys.executable).parent / name


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its stdout (tests fail loudly if git fails)."""
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_IDENTITY},
    )
    return done.stdout


def cli(
    *args: str | Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run a command (an installed console script, usually) to its end: no stdin, output captured."""
    return subprocess.run(
        [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env=env,
        check=False,
    )


def status_json(plan: Path, *extra: str) -> dict[str, Any]:
    """``pagent status PLAN --json`` (plus ``extra`` options), which must succeed."""
    done = cli(bin_path("pagent"), "status", plan, "--json", *extra)
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


@pytest.fixture
def git_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A git identity for commits made by tests and their agents."""
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def repo(tmp_path: Path, git_env: None) -> Path:
    """A git repository with one commit on main, in tmp_path/repo."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=main")
    (path / "README.md").write_text("test repository\n")
    git(path, "add", "README.md")
    git(path, "commit", "--quiet", "-m", "initial commit")
    return path
