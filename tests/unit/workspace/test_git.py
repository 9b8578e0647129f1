"""pagent's one git runner on real repositories: hooks never run, a blocked call ends at its time
bound or the moment its await is cancelled (its whole process group with it), its environment
carries the owner's cookie down to git's children, and output that is not UTF-8 survives."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import psutil
import pytest

from supervisor.errors import GitError
from supervisor.workspace.git import commit_of, git, in_thread, is_ancestor, owned_by, run_git, shown
from tests.conftest import git as their_git


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def gits_in(repo: Path) -> list[psutil.Process]:
    """Live git processes (and their children) working in ``repo``."""
    found = []
    for proc in psutil.process_iter(["cwd", "status"]):
        if proc.info["cwd"] == str(repo) and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


@pytest.fixture
def fifo(repo: Path) -> Iterator[Path]:
    """``.git/info/attributes`` as a FIFO nobody writes: ``git add`` blocks opening it."""
    path = repo / ".git" / "info" / "attributes"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    (repo / "new.txt").write_text("new\n")
    yield path
    path.unlink()
    for proc in gits_in(repo):  # only if a test failed: never leave a blocked git behind
        proc.kill()


def test_hooks_never_run_for_pagents_git(repo: Path, tmp_path: Path) -> None:
    """A post-commit hook that the tests' own git runs (so the hook works) is skipped by pagent's."""
    ran = tmp_path / "hook-ran"
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(f'#!/bin/sh\necho "$0" >> "{ran}"\n')
    hook.chmod(0o755)
    their_git(repo, "commit", "--quiet", "--allow-empty", "-m", "by the tests")
    assert ran.exists()
    ran.unlink()
    git(["-c", "user.name=p", "-c", "user.email=p@x", "commit", "--quiet", "--allow-empty", "-m", "x"], repo)
    assert not ran.exists()


def test_a_blocked_call_ends_at_its_time_bound_and_leaves_nothing(repo: Path, fifo: Path) -> None:
    """``git add`` blocked on a FIFO: GitError after the bound, git's group killed."""
    started = time.monotonic()
    with pytest.raises(GitError, match=r"git add new.txt: no answer within 0.5 s \(stopped\)"):
        git(["add", "new.txt"], repo, timeout=0.5)
    assert time.monotonic() - started < 3
    assert gits_in(repo) == []


@pytest.mark.anyio
async def test_cancelling_the_await_kills_the_git_at_once(repo: Path, fifo: Path) -> None:
    """The git call of a worker-thread job dies when the awaiting task is cancelled, long
    before its time bound; the job's next git call fails without starting git."""
    calls: list[str] = []

    def job() -> None:
        for _ in range(2):
            try:
                git(["add", "new.txt"], repo)
            except GitError as exc:
                calls.append(str(exc))

    started = time.monotonic()
    with anyio.fail_after(10), anyio.move_on_after(0.3):
        await in_thread(job)
    assert time.monotonic() - started < 2
    deadline = time.monotonic() + 5
    while len(calls) < 2:  # the abandoned thread ends once its git is dead
        assert time.monotonic() < deadline
        time.sleep(0.01)
    assert calls == ["git add new.txt: stopped", "git add new.txt: stopped"]
    assert gits_in(repo) == []


def test_the_owners_cookie_reaches_git_and_what_git_starts(repo: Path) -> None:
    """Inside ``owned_by``, a shell that git starts (an alias) sees PAGENT_COOKIE; outside, not."""
    alias = ["-c", "alias.showenv=!env"]
    with owned_by("abc:git:run-1"):
        inside = git([*alias, "showenv"], repo)
    outside = git([*alias, "showenv"], repo)
    assert "PAGENT_COOKIE=abc:git:run-1" in inside.splitlines()
    assert "PAGENT_COOKIE=abc:git:run-1" not in outside.splitlines()


def test_git_runs_in_a_process_group_of_its_own_without_a_prompt(repo: Path) -> None:
    """git leads its own group and session, and asks no terminal for anything."""
    out = git(["-c", "alias.me=!ps -o pid=,pgid=,sid= -p $PPID; echo $GIT_TERMINAL_PROMPT", "me"], repo)
    ids, prompt = out.split("\n")[0].split(), out.split("\n")[1]
    assert ids[0] == ids[1] == ids[2]  # the git that ran the alias is its group's and session's leader
    assert int(ids[1]) != os.getpgrp()
    assert prompt == "0"


def test_variables_pointing_git_elsewhere_are_ignored(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GIT_DIR and GIT_WORK_TREE (set when pagent runs from a git hook) do not redirect it."""
    other = tmp_path / "other"
    other.mkdir()
    their_git(other, "init", "--quiet")
    monkeypatch.setenv("GIT_DIR", str(other / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(other))
    assert git(["rev-parse", "--show-toplevel"], repo).strip() == str(repo)


def test_a_missing_directory_is_named_as_such(tmp_path: Path) -> None:
    """Not "git is not installed": the directory that is gone."""
    with pytest.raises(GitError, match=r"git status: no such directory: .*/gone"):
        git(["status"], tmp_path / "gone")


def test_output_that_is_not_utf8_round_trips_and_prints(repo: Path) -> None:
    """A file name that is not UTF-8 comes back as a str that works as argv, and prints."""
    with open(bytes(repo) + b"/\xff.txt", "wb"):
        pass
    listed = git(["ls-files", "-z", "--others"], repo).split("\0")[0]
    git(["add", "--", listed], repo)
    assert git(["diff", "--cached", "--name-only", "-z"], repo).split("\0")[0] == listed
    assert shown(listed) == "\\xff.txt"


def test_exit_codes_and_ancestry(repo: Path) -> None:
    """``run_git`` returns failures; ``is_ancestor`` answers, and raises for unknown commits."""
    head = commit_of(repo, "HEAD")
    assert head is not None
    assert commit_of(repo, "no-such-branch") is None
    assert run_git(["rev-parse", "--verify", "--quiet", "nope"], repo).code == 1
    their_git(repo, "commit", "--quiet", "--allow-empty", "-m", "second")
    second = commit_of(repo, "HEAD")
    assert second is not None
    assert is_ancestor(repo, head, second)
    assert not is_ancestor(repo, second, head)
    with pytest.raises(GitError):
        is_ancestor(repo, "0" * 40, second)
