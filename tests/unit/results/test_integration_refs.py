"""The integration branch is the base plus pagent's merges: a commit someone else put on it is
pinned and replaced, a merge a stopped run left half done is aborted, and a merge blocked in git
dies with the cancelled await (the runner's way of running ``after_wave``)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import anyio
import psutil
import pytest

from supervisor.results.integration import Integration, after_wave
from supervisor.workspace.git import in_thread
from supervisor.workspace.refs import Wish, integration_pins, reserve
from tests.conftest import git
from tests.unit.results.test_integration import branch_with


def _in(proc: psutil.Process, where: Path) -> bool:
    """Whether ``proc`` (alive, not a zombie) works under ``where``."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE and str(proc.info["cwd"] or "").startswith(str(where))
    except psutil.Error:
        return False


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def integration(repo: Path, tmp_path: Path) -> Integration:
    """``integ`` reserved at main's commit, as a run records it."""
    base = git(repo, "rev-parse", "main").strip()
    assert reserve(repo, [Wish("integ")], base, "R1") == ["integ"]
    return Integration(
        repo, tmp_path / ".integration", "integ", base, expect=base, pins=integration_pins("R1")
    )


def test_a_commit_planted_on_the_integration_branch_is_pinned_and_replaced(
    repo: Path, tmp_path: Path
) -> None:
    into = integration(repo, tmp_path)
    branch_with(repo, "evil", {"evil.txt": "x\n"})
    planted = git(repo, "rev-parse", "evil").strip()
    git(repo, "update-ref", "refs/heads/integ", planted)
    branch_with(repo, "t/a", {"a.txt": "a\n"})
    found = after_wave({}, [("a", "t/a")], into, "w")
    assert found.skipped is None
    assert [m.merged for m in found.merges] == [True]
    assert found.reset is not None
    assert "reset to" in found.reset
    files = git(repo, "ls-tree", "--name-only", "integ").split()
    assert "a.txt" in files
    assert "evil.txt" not in files
    assert git(repo, "rev-parse", f"refs/pagent/R1/+integration/foreign-{planted[:12]}").strip() == planted
    assert found.tip == git(repo, "rev-parse", "integ").strip()


def test_a_merge_left_half_done_is_aborted_first(repo: Path, tmp_path: Path) -> None:
    into = integration(repo, tmp_path)
    branch_with(repo, "t/a", {"shared.txt": "a\n"})
    branch_with(repo, "t/b", {"shared.txt": "b\n"})
    assert [m.merged for m in after_wave({}, [("a", "t/a")], into, "w1").merges] == [True]
    tip = git(repo, "rev-parse", "integ").strip()
    done = subprocess.run(
        ["git", "merge", "--no-edit", "t/b"], cwd=into.worktree, capture_output=True, check=False
    )
    assert done.returncode != 0  # a conflict, left in the middle as a killed run would
    branch_with(repo, "t/c", {"c.txt": "c\n"})
    found = after_wave({}, [("c", "t/c")], Integration(**{**into.__dict__, "expect": tip}), "w2")
    assert found.reset is not None
    assert "aborted a merge" in found.reset
    assert [m.merged for m in found.merges] == [True]


@pytest.mark.anyio
async def test_a_blocked_merge_dies_with_the_cancelled_await(repo: Path, tmp_path: Path) -> None:
    into = integration(repo, tmp_path)
    branch_with(repo, "t/a", {"a.txt": "a\n"})
    fifo = repo / ".git" / "info" / "attributes"
    fifo.parent.mkdir(exist_ok=True)
    os.mkfifo(fifo)
    try:
        started = time.monotonic()
        with anyio.fail_after(10), anyio.move_on_after(0.5) as scope:
            await in_thread(after_wave, {}, [("a", "t/a")], into, "w")
        assert scope.cancelled_caught  # it really was blocked
        assert time.monotonic() - started < 5  # not git's own 10-minute bound
        deadline = time.monotonic() + 5  # SIGKILL is sent at once; the kernel takes its moment
        while left := [p for p in psutil.process_iter(["cwd"]) if _in(p, tmp_path)]:
            assert time.monotonic() < deadline, left
            time.sleep(0.02)
    finally:
        fifo.unlink()
