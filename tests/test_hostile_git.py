"""pagent's own git calls under attack: hooks that hang, a repository file that blocks git, and
what agents leave behind for the git calls after them (an ``index.lock``, a rewritten root
commit, a file name that is not UTF-8).

Issue 12 promises: every git call of pagent is bounded and interruptible (a hook cannot hang the
run; SIGTERM ends it within a few seconds with 143 and no git or hook process left), and nothing
an agent does to git crashes the run. Real repositories, real hooks (shell scripts in
``.git/hooks``), the installed CLI; agents playing with refs are in ``test_hostile_refs``.
Each case was written first against code that did not hold it (issue 12); the fixes made every one hold.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import git
from tests.hostile import (
    FifoTrap,
    Reaper,
    alive,
    ended_cleanly,
    ended_within,
    hanging_hook,
    hook,
    pid_from,
    reaping,
    run,
    tasks_by_id,
    wait_for,
    write_plan,
)

pytestmark = pytest.mark.slow  # real processes (README, "Tests")


@pytest.fixture
def reaper(tmp_path: Path) -> Iterator[Reaper]:
    with reaping(tmp_path) as started:
        yield started


# -- hooks ---------------------------------------------------------------------------------------

# (hook, task, top-level plan keys): each hangs in a git call pagent itself makes.
HANGING = [
    pytest.param(("post-checkout", {"prompt": "commit x"}, {}), id="post-checkout-in-worktree-add"),
    pytest.param(
        ("reference-transaction", {"prompt": "commit x"}, {}), id="reference-transaction-in-worktree-add"
    ),
    pytest.param(("post-commit", {"prompt": "write w.txt w"}, {}), id="post-commit-in-auto-commit"),
    pytest.param(
        ("post-merge", {"prompt": "write w.txt w\ncommit w"}, {"integrate": {"branch": "integ"}}),
        id="post-merge-in-integration",
    ),
]


@pytest.mark.parametrize("case", HANGING)
def test_sigterm_during_a_hanging_hook_ends_the_run_with_143_and_no_git_left(
    tmp_path: Path, repo: Path, reaper: Reaper, case: tuple[str, dict[str, Any], dict[str, Any]]
) -> None:
    """A hook that never returns, in a git call pagent makes; SIGTERM to pagent-run. Before issue 12, the
    run says "received SIGTERM: stopping every agent" and then waits for git for ever (git and
    the hook's ``sleep`` stay alive). A run that skips the hook and ends by itself holds too."""
    hook_name, task, top = case
    pidfile = tmp_path / "hook.pid"
    hanging_hook(repo, hook_name, pidfile)
    plan = write_plan(tmp_path / "plans", repo, {"a": task}, top=top)
    proc = reaper.start(plan)
    wait_for(lambda: pidfile.exists() or proc.poll() is not None, 20, "the hook or the end of the run")
    if not pidfile.exists():  # pagent's git skipped the hook
        assert proc.wait() in (0, 1), reaper.output(proc)
        return
    proc.send_signal(signal.SIGTERM)
    assert ended_within(proc, 5) == 143, reaper.output(proc)
    assert not alive(pid_from(pidfile))
    assert reaper.leftovers() == []


def test_sigterm_during_a_git_call_blocked_on_a_fifo_ends_the_run_with_143(
    tmp_path: Path, repo: Path, reaper: Reaper
) -> None:
    """No hook at all: the repository's ``.git/info/attributes`` is a FIFO, so ``git worktree
    add`` blocks reading it. SIGTERM must stop that git at once (exit 143, git gone)."""
    trap = FifoTrap(repo / ".git" / "info" / "attributes")
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    proc = reaper.start(plan)
    try:
        assert trap.wait_for_reader(20, proc), reaper.output(proc)
        proc.send_signal(signal.SIGTERM)
        code = ended_within(proc, 5)
        left = reaper.leftovers()
    finally:
        trap.release()
    assert code == 143, reaper.output(proc)
    assert left == []


@pytest.mark.parametrize(
    ("hook_name", "task"),
    [
        pytest.param("post-checkout", {"prompt": "commit x"}, id="post-checkout"),
        pytest.param("post-commit", {"prompt": "write w.txt w"}, id="post-commit"),
    ],
)
def test_a_hanging_hook_cannot_hang_the_run(
    tmp_path: Path, repo: Path, reaper: Reaper, hook_name: str, task: dict[str, Any]
) -> None:
    """No signal at all: with ``timeout = "3s"`` the run must end on its own (hooks skipped, or
    bounded), within a few seconds. Before issue 12, it never ends."""
    hanging_hook(repo, hook_name, tmp_path / "hook.pid")
    plan = write_plan(tmp_path / "plans", repo, {"a": {**task, "timeout": "3s"}})
    proc = reaper.start(plan)
    assert ended_within(proc, 8) in (0, 1), reaper.output(proc)


def test_failing_commit_hooks_do_not_stop_auto_commit(tmp_path: Path, repo: Path) -> None:
    """Holds: pre-commit and commit-msg hooks that fail are skipped by auto-commit
    (``--no-verify``): the agent's uncommitted work is on its branch."""
    hook(repo, "pre-commit", "exit 1")
    hook(repo, "commit-msg", "exit 1")
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": "write w.txt work"}})
    done = run(plan)
    assert done.returncode == 0, done.stderr
    assert git(repo, "show", f"{tasks_by_id(plan)['a']['branch']}:w.txt") == "work\n"


def test_an_agent_enabling_commit_signing_does_not_stop_auto_commit(tmp_path: Path, repo: Path) -> None:
    """Holds: the agent sets ``commit.gpgsign = true`` with a gpg that always fails;
    auto-commit passes ``--no-gpg-sign`` and commits anyway."""
    prompt = "git-config commit.gpgsign true\ngit-config gpg.program /bin/false\nwrite w.txt work"
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": prompt}})
    done = run(plan)
    assert done.returncode == 0, done.stderr
    assert git(repo, "show", f"{tasks_by_id(plan)['a']['branch']}:w.txt") == "work\n"


# -- what agents leave behind for pagent's own git calls --------------------------------------


def test_an_agent_rewriting_the_root_commit_does_not_crash_the_run(tmp_path: Path, repo: Path) -> None:
    """The agent amends the base (here the root commit): its branch shares no history with
    base. Before issue 12, ``git merge-base`` fails, GitError escapes: internal error, task ``running``."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": "amend rewritten"}})
    view = ended_cleanly(plan, run(plan))
    assert view["tasks"][0]["state"] == "failed"


def test_an_agent_leaving_index_lock_behind_does_not_crash_the_run(tmp_path: Path, repo: Path) -> None:
    """The agent leaves uncommitted work and its worktree's ``index.lock`` (a crashed git).
    Before issue 12, auto-commit's ``git add`` fails, GitError escapes: internal error, task ``running``,
    and the other task of the wave is left ``running`` too."""
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": {"prompt": "write w.txt w\nindex-lock"}, "b": {"prompt": "sleep 0.5\nwrite b.txt b"}},
    )
    view = ended_cleanly(plan, run(plan))
    states = {t["id"]: t["state"] for t in view["tasks"]}
    assert states == {"a": "failed", "b": "succeeded"}


def test_a_file_name_that_is_not_utf8_does_not_crash_the_run(tmp_path: Path, repo: Path) -> None:
    """The agent leaves an untracked file named ``b"\\xff.txt"``. Before issue 12, auto-commit's
    ``git status -z`` output cannot be decoded: internal error, the task ``running``."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": "write-hex-name ff2e747874\nwrite w.txt w"}})
    view = ended_cleanly(plan, run(plan))
    assert view["tasks"][0]["state"] in ("succeeded", "failed")
