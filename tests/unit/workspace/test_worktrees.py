"""The local workspaces on real repositories: a reserved branch is used only at the commit
pagent recorded (a planted one is pinned and replaced), every attempt's commits are pinned,
work off the branch is reported (and never auto-committed), and a worktree whose ``.git`` leads
elsewhere is not touched."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.errors import GitError
from supervisor.seam import CollectRequest, Workspace, WorkspaceRequest
from supervisor.workspace import local
from supervisor.workspace.gitdir import admin_dir
from supervisor.workspace.refs import Wish, pins, reserve
from tests.conftest import git as their_git

PINS = pins("R1", "a")


def tip(repo: Path, ref: str) -> str:
    return their_git(repo, "rev-parse", ref).strip()


def commit_in(where: Path, name: str) -> str:
    (where / f"{name}.txt").write_text(name + "\n")
    their_git(where, "add", f"{name}.txt")
    their_git(where, "commit", "--quiet", "-m", name)
    return tip(where, "HEAD")


def request(repo: Path, tmp_path: Path, **given: object) -> WorkspaceRequest:
    """A fresh task "a" on the reserved branch ``pagent/h/a``."""
    base = tip(repo, "main")
    fields: dict[str, object] = {"start": base, "expect": base, "fresh": True, "pins": PINS}
    fields.update(given)
    return WorkspaceRequest(repo, tmp_path / "wt" / "R1" / "a", "pagent/h/a", **fields)  # type: ignore[arg-type]


def collect_request(start: str, head_before: str, attempt: int = 1) -> CollectRequest:
    return CollectRequest("a", attempt, "ok", head_before, start, auto_commit=True, marker=None, pins=PINS)


@pytest.fixture
def reserved(repo: Path) -> str:
    base = tip(repo, "main")
    assert reserve(repo, [Wish("pagent/h/a")], base, "R1") == ["pagent/h/a"]
    return base


def test_a_reserved_branch_is_checked_out_at_its_start(repo: Path, tmp_path: Path, reserved: str) -> None:
    workspace = local.prepare(request(repo, tmp_path))
    assert workspace.created
    assert workspace.head == reserved
    assert workspace.repo == repo


def test_a_commit_planted_on_a_reserved_branch_is_pinned_and_replaced(
    repo: Path, tmp_path: Path, reserved: str
) -> None:
    """Another agent moved the branch before its task ran: the task starts from its start all
    the same, and the planted commit stays reachable."""
    their_git(repo, "checkout", "--quiet", "-b", "evil")
    planted = commit_in(repo, "planted")
    their_git(repo, "checkout", "--quiet", "main")
    their_git(repo, "update-ref", "refs/heads/pagent/h/a", planted)
    workspace = local.prepare(request(repo, tmp_path))
    assert workspace.head == reserved
    assert tip(repo, f"{PINS}/planted") == planted


def test_a_stacked_task_moves_its_reserved_branch_to_its_dependencys_commit(
    repo: Path, tmp_path: Path, reserved: str
) -> None:
    their_git(repo, "checkout", "--quiet", "-b", "dep")
    dep = commit_in(repo, "dep")
    their_git(repo, "checkout", "--quiet", "main")
    workspace = local.prepare(request(repo, tmp_path, start=dep))
    assert workspace.head == dep == tip(repo, "pagent/h/a")


def test_a_branch_rewritten_since_its_last_attempt_is_refused(
    repo: Path, tmp_path: Path, reserved: str
) -> None:
    """Not fresh: the branch must still descend from the commit pagent recorded."""
    their_git(repo, "checkout", "--quiet", "--orphan", "other")
    elsewhere = commit_in(repo, "unrelated")
    their_git(repo, "checkout", "--quiet", "main")
    their_git(repo, "update-ref", "refs/heads/pagent/h/a", elsewhere)
    with pytest.raises(GitError, match="was rewritten since pagent recorded it"):
        local.prepare(request(repo, tmp_path, fresh=False))


def test_a_branch_gone_since_its_last_attempt_is_refused(repo: Path, tmp_path: Path, reserved: str) -> None:
    their_git(repo, "branch", "--quiet", "-D", "pagent/h/a")
    with pytest.raises(GitError, match=r"branch pagent/h/a is gone \(its commits are pinned under"):
        local.prepare(request(repo, tmp_path, fresh=False))


def test_collect_pins_the_branch_and_auto_commits_on_it(repo: Path, tmp_path: Path, reserved: str) -> None:
    workspace = local.prepare(request(repo, tmp_path))
    commit_in(workspace.path, "work")
    (workspace.path / "left.txt").write_text("uncommitted\n")
    facts = local.collect(workspace, collect_request(reserved, reserved))
    assert facts.auto_committed
    assert facts.on_branch
    assert facts.descends
    assert facts.pinned == (f"{PINS}/1",)
    assert tip(repo, f"{PINS}/1") == tip(repo, "pagent/h/a") == facts.branch_tip == facts.head
    assert facts.diff is not None
    assert facts.diff.paths == ("left.txt", "work.txt")


def test_work_left_detached_is_pinned_never_auto_committed_and_off_branch(
    repo: Path, tmp_path: Path, reserved: str
) -> None:
    workspace = local.prepare(request(repo, tmp_path))
    their_git(workspace.path, "checkout", "--quiet", "--detach")
    detached = commit_in(workspace.path, "detached")
    (workspace.path / "left.txt").write_text("uncommitted\n")
    facts = local.collect(workspace, collect_request(reserved, reserved))
    assert not facts.on_branch
    assert not facts.auto_committed
    assert facts.pinned == (f"{PINS}/1", f"{PINS}/1-head")
    assert tip(repo, f"{PINS}/1-head") == detached
    assert tip(repo, "pagent/h/a") == reserved
    assert (workspace.path / "left.txt").exists()  # still there, uncommitted: nothing lost


def test_a_head_detached_at_the_branch_is_put_back_and_auto_committed(
    repo: Path, tmp_path: Path, reserved: str
) -> None:
    workspace = local.prepare(request(repo, tmp_path))
    their_git(workspace.path, "checkout", "--quiet", "--detach")
    (workspace.path / "left.txt").write_text("uncommitted\n")
    facts = local.collect(workspace, collect_request(reserved, reserved))
    assert facts.on_branch
    assert facts.auto_committed
    assert their_git(workspace.path, "symbolic-ref", "HEAD").strip() == "refs/heads/pagent/h/a"


def test_an_amended_start_is_a_rewritten_history(repo: Path, tmp_path: Path, reserved: str) -> None:
    workspace = local.prepare(request(repo, tmp_path))
    their_git(workspace.path, "commit", "--quiet", "--amend", "--allow-empty", "-m", "rewritten")
    facts = local.collect(workspace, collect_request(reserved, reserved))
    assert facts.on_branch
    assert not facts.descends


def test_a_worktree_whose_git_leads_to_the_main_repository_is_not_touched(
    repo: Path, tmp_path: Path, reserved: str
) -> None:
    """The agent rewrote its ``.git`` file: pagent's auto-commit would land on main. It refuses,
    after pinning what the repository itself says the worktree's HEAD is."""
    workspace = local.prepare(request(repo, tmp_path))
    mine = commit_in(workspace.path, "mine")
    (workspace.path / ".git").write_text(f"gitdir: {repo}/.git\n")
    (workspace.path / "left.txt").write_text("uncommitted\n")
    with pytest.raises(GitError, match=r"leads to .*, not to its worktree"):
        local.collect(workspace, collect_request(reserved, reserved))
    assert tip(repo, "main") == reserved
    assert tip(repo, f"{PINS}/1") == mine


def test_begin_puts_head_back_and_snapshots_the_refs(repo: Path, tmp_path: Path, reserved: str) -> None:
    workspace = local.prepare(request(repo, tmp_path))
    their_git(workspace.path, "checkout", "--quiet", "--detach")
    begun = local.begin(workspace, None)
    assert begun.head == reserved
    assert begun.refs["refs/heads/pagent/h/a"] == reserved
    assert their_git(workspace.path, "symbolic-ref", "HEAD").strip() == "refs/heads/pagent/h/a"


def test_a_fifo_in_the_administrative_directory_never_blocks(
    repo: Path, tmp_path: Path, reserved: str
) -> None:
    """Outside git's time bound pagent reads one file of the repository's own; an agent turning it
    into a FIFO makes the worktree unknown, not pagent hung."""
    workspace = local.prepare(request(repo, tmp_path))
    admin = admin_dir(repo, workspace.path)
    assert admin is not None
    (admin / "gitdir").unlink()
    os.mkfifo(admin / "gitdir")
    assert admin_dir(repo, workspace.path) is None
    with pytest.raises(GitError, match="not a worktree of"):
        local.begin(Workspace(workspace.path, "pagent/h/a", None, repo=repo), None)


@pytest.mark.parametrize("forgery", ["git-directory", "commondir-elsewhere", "another-worktrees-admin"])
def test_a_worktree_whose_git_directory_was_forged_is_not_trusted(
    repo: Path, tmp_path: Path, reserved: str, forgery: str
) -> None:
    """``.git`` replaced by a repository of its own, the administrative ``commondir`` pointed at
    another repository, or ``.git`` pointed at a sibling worktree's administrative directory:
    each makes git work somewhere pagent did not create, so ``begin`` refuses."""
    workspace = local.prepare(request(repo, tmp_path))
    admin = admin_dir(repo, workspace.path)
    assert admin is not None
    if forgery == "git-directory":
        (workspace.path / ".git").unlink()
        their_git(workspace.path, "init", "--quiet")
    elif forgery == "commondir-elsewhere":
        other = tmp_path / "other"
        other.mkdir()
        their_git(other, "init", "--quiet")
        (admin / "commondir").write_text(f"{other}/.git\n")
    else:
        sibling = tmp_path / "sibling"
        their_git(repo, "worktree", "add", "--quiet", "-b", "sibling", str(sibling))
        sibling_admin = admin_dir(repo, sibling)
        (workspace.path / ".git").write_text(f"gitdir: {sibling_admin}\n")
    with pytest.raises(GitError, match=r"not a worktree of|not to its worktree"):
        local.begin(workspace, None)
