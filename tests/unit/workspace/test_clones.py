"""The clone workspace on real repositories: prepare, begin, collect (pins, fetch, auto-commit,
the branch's state), recovery after a crash, reuse, refusal, removal (``workspace.clones``,
``workspace.clone``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from supervisor.errors import GitError
from supervisor.seam import CollectRequest, Workspace, WorkspaceRequest
from supervisor.workspace import clone, clones
from supervisor.workspace.clone import CloneError
from tests.conftest import git

BRANCH = "pagent/h/a"
PINS = "refs/pagent/R1/a"


def head(repo: Path, ref: str = "HEAD") -> str:
    return git(repo, "rev-parse", "--verify", ref).strip()


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


def commit(path: Path, name: str, text: str, message: str = "work") -> str:
    (path / name).write_text(text)
    git(path, "add", name)
    git(path, "commit", "--quiet", "-m", message)
    return head(path)


def request(repo: Path, tmp_path: Path, **fields: object) -> WorkspaceRequest:
    base = head(repo, "main")
    values: dict[str, object] = {"expect": base, "fresh": True, "pins": PINS, "kind": "clone", **fields}
    return WorkspaceRequest(repo, tmp_path / "wt" / "R1" / "a", BRANCH, base, **values)  # type: ignore[arg-type]


def collect_request(attempt: int, before: str, start: str, **fields: object) -> CollectRequest:
    values: dict[str, object] = {"auto_commit": True, "marker": None, "pins": PINS, **fields}
    return CollectRequest("a", attempt, "ok", before, start, **values)  # type: ignore[arg-type]


@pytest.fixture
def made(repo: Path, tmp_path: Path) -> Workspace:
    """A fresh clone workspace of ``repo`` on BRANCH (reserved at main), and a branch ``other``."""
    git(repo, "branch", "other")
    git(repo, "branch", BRANCH)
    return clones.prepare(request(repo, tmp_path))


def test_prepare_makes_a_shared_clone_on_the_branch(made: Workspace, repo: Path) -> None:
    """The clone is on the task branch at the branch's commit and borrows every object."""
    assert made.kind == "clone"
    assert made.created
    assert made.head == head(repo, "main")
    assert git(made.path, "symbolic-ref", "HEAD").strip() == f"refs/heads/{BRANCH}"
    alternates = (made.path / ".git/objects/info/alternates").read_text().strip()
    assert Path(alternates) == (repo / ".git/objects").resolve()
    counts = git(made.path, "count-objects", "-v").splitlines()
    assert "count: 0" in counts
    assert "in-pack: 0" in counts
    assert clone.is_clone_of(repo, made.path)


def test_collect_brings_the_commits_home_pinned(made: Workspace, repo: Path) -> None:
    """Two commits and uncommitted work: auto-committed, fetched, pinned, on the branch in the
    main repository; facts as for a worktree; no other ref moves."""
    before = refs(repo)
    start = head(repo, "main")
    commit(made.path, "a.txt", "a\n")
    commit(made.path, "b.txt", "b\n")
    (made.path / "c.txt").write_text("c\n")
    facts = clones.collect(made, collect_request(1, start, start))
    tip = head(made.path)
    assert facts.auto_committed
    assert facts.on_branch
    assert facts.descends
    assert facts.branch_tip == facts.head == tip == head(repo, BRANCH) == head(repo, f"{PINS}/1")
    assert facts.pinned == (f"{PINS}/1",)
    assert facts.diff is not None
    assert (facts.diff.commits, facts.diff.files) == (3, 3)
    assert not facts.diff.uncommitted
    assert sorted(facts.changed) == ["a.txt", "b.txt", "c.txt"]
    after = refs(repo)
    assert after.pop(f"refs/heads/{BRANCH}") == after.pop(f"{PINS}/1") == tip
    before.pop(f"refs/heads/{BRANCH}")
    assert after == before
    assert clone.unfetched_commits(repo, made.path, BRANCH) == 0
    git(repo, "fsck", "--no-dangling")  # the objects really are in the main repository


def test_the_marker_is_never_committed_and_auto_commit_obeys_the_flag(made: Workspace, repo: Path) -> None:
    start = head(repo, "main")
    (made.path / ".done").write_text("")
    (made.path / "w.txt").write_text("w\n")
    facts = clones.collect(made, collect_request(1, start, start, marker=".done", auto_commit=False))
    assert facts.marker_found
    assert not facts.auto_committed
    assert facts.diff is not None
    assert facts.diff.uncommitted
    assert facts.diff.commits == 0
    assert not (made.path / ".done").exists()


def test_rewriting_own_work_moves_the_branch_rewriting_base_does_not(made: Workspace, repo: Path) -> None:
    """As in a worktree: amending an earlier attempt's commit is the task's own business (the old
    one stays pinned); rewriting the task's start is ``descends = False``, the branch stays."""
    start = head(repo, "main")
    first = commit(made.path, "a.txt", "a\n")
    clones.collect(made, collect_request(1, start, start))
    git(made.path, "commit", "--quiet", "--amend", "-m", "amended")
    amended = head(made.path)
    facts = clones.collect(made, collect_request(2, first, start))
    assert facts.on_branch
    assert facts.descends
    assert head(repo, BRANCH) == amended
    assert head(repo, f"{PINS}/1") == first
    git(made.path, "reset", "--quiet", "--hard", start)
    git(made.path, "commit", "--quiet", "--amend", "-m", "base rewritten")
    rewritten = head(made.path)
    facts = clones.collect(made, collect_request(3, amended, start))
    assert not facts.descends
    assert facts.on_branch
    assert head(repo, BRANCH) == amended == facts.branch_tip
    assert head(repo, f"{PINS}/3") == rewritten
    # The next attempt starts again from the branch: nothing is orphaned, the pin holds it.
    assert clones.begin(made, None).head == amended == head(made.path)


def test_work_off_the_branch_is_pinned_and_reported(made: Workspace, repo: Path) -> None:
    """Commits on a detached HEAD, or with the branch deleted in the clone, stay reachable and
    the facts say HEAD is not on the branch; the branch in the main repository stays."""
    start = head(repo, "main")
    git(made.path, "checkout", "--quiet", "--detach")
    stray = commit(made.path, "a.txt", "a\n")
    facts = clones.collect(made, collect_request(1, start, start))
    assert not facts.on_branch
    assert not facts.auto_committed
    assert head(repo, f"{PINS}/1-head") == stray
    assert head(repo, BRANCH) == start
    git(made.path, "branch", "--quiet", "-D", BRANCH)
    facts = clones.collect(made, collect_request(2, start, start))
    assert not facts.on_branch
    assert head(repo, f"{PINS}/2") == stray
    assert head(repo, BRANCH) == start


def test_a_branch_moved_meanwhile_is_not_overwritten(made: Workspace, repo: Path) -> None:
    """Someone moved the task branch in the main repository during the attempt: the clone's
    work does not descend from it, stays pinned, and the branch is left where they put it."""
    start = head(repo, "main")
    mine = commit(made.path, "a.txt", "a\n")
    moved = git(repo, "commit-tree", "-p", start, "-m", "someone else", "main^{tree}").strip()
    git(repo, "update-ref", f"refs/heads/{BRANCH}", moved)
    with pytest.raises(GitError):
        clone.integrate(repo, BRANCH, mine, moved)  # the compare-and-swap itself
    clone.fetch_pins(repo, made.path, BRANCH, f"{PINS}/1")
    assert head(repo, BRANCH) == moved
    assert head(repo, f"{PINS}/1") == mine


def test_a_crashed_attempts_commits_are_recovered_on_reuse(
    made: Workspace, repo: Path, tmp_path: Path
) -> None:
    """The supervisor died before collect: the retry's prepare brings the commits onto the
    branch (they descend from it); diverged ones are pinned aside and the clone reset."""
    start = head(repo, "main")
    mine = commit(made.path, "a.txt", "a\n")
    again = clones.prepare(request(repo, tmp_path, fresh=False))
    assert not again.created
    assert again.head == mine == head(repo, BRANCH)
    git(made.path, "reset", "--quiet", "--hard", start)
    diverged = commit(made.path, "b.txt", "b\n", "diverged")
    again = clones.prepare(request(repo, tmp_path, fresh=False, expect=mine))
    assert again.head == mine == head(made.path)
    assert head(repo, f"{PINS}/recovered-{diverged[:12]}") == diverged


def test_a_planted_commit_is_pinned_and_replaced(repo: Path, tmp_path: Path) -> None:
    """Before the task ever ran, someone put a commit on its reserved branch (as for worktrees)."""
    base = head(repo, "main")
    planted = git(repo, "commit-tree", "-p", base, "-m", "planted", "main^{tree}").strip()
    git(repo, "branch", BRANCH, planted)
    ws = clones.prepare(request(repo, tmp_path))
    assert ws.head == base == head(repo, BRANCH)
    assert head(repo, f"{PINS}/planted") == planted


def test_uncommitted_work_blocks_moving_and_removal(made: Workspace, repo: Path) -> None:
    """Modified and untracked files count, ignored ones do not; removal refuses until forced."""
    (made.path / ".gitignore").write_text("build/\n")
    (made.path / "build").mkdir()
    (made.path / "build" / "out.o").write_text("x")
    (made.path / "README.md").write_text("changed\n")
    assert sorted(clone.uncommitted_paths(repo, made.path, BRANCH)) == [".gitignore", "README.md"]
    ahead = git(repo, "commit-tree", "-p", head(repo, "main"), "-m", "by hand", "main^{tree}").strip()
    git(repo, "update-ref", f"refs/heads/{BRANCH}", ahead)  # the clone must move now
    with pytest.raises(CloneError, match="uncommitted work"):
        clone.sync(repo, made.path, BRANCH)
    with pytest.raises(CloneError, match="uncommitted changes"):
        clone.remove_clone(repo, made.path, BRANCH)
    assert made.path.is_dir()
    clone.remove_clone(repo, made.path, BRANCH, force=True)
    assert not made.path.exists()
    assert head(repo, BRANCH) == ahead


def test_unfetched_commits_block_removal_until_fetched(made: Workspace, repo: Path) -> None:
    start = head(repo, "main")
    commit(made.path, "a.txt", "a\n")
    with pytest.raises(CloneError, match="1 commit"):
        clone.remove_clone(repo, made.path, BRANCH)
    clones.collect(made, collect_request(1, start, start))
    clone.remove_clone(repo, made.path, BRANCH)
    assert not made.path.exists()


def test_a_tampered_git_dir_is_refused(made: Workspace, repo: Path) -> None:
    """A symlink in .git (refs into the main repository) stops every pagent call there."""
    before = refs(repo)
    heads = made.path / ".git" / "refs" / "heads"
    shutil.move(heads, made.path / ".git" / "refs" / "heads.old")
    heads.symlink_to(repo / ".git" / "refs" / "heads")
    start = head(repo, "main")
    for call in (
        lambda: clones.collect(made, collect_request(1, start, start)),
        lambda: clones.begin(made, None),
        lambda: clone.uncommitted_paths(repo, made.path, BRANCH),
        lambda: clone.remove_clone(repo, made.path, BRANCH),
    ):
        with pytest.raises(CloneError, match=r"symlink \.git/refs/heads"):
            call()
    assert refs(repo) == before
    assert made.path.exists()
    assert not clone.is_clone_of(repo, repo)


def plant_traps(path: Path, marker: Path) -> None:
    """What a hostile agent can leave in its clone: an fsmonitor, a clean filter, a hook."""
    git(path, "config", "core.fsmonitor", f"touch {marker}.fsmonitor; false")
    git(path, "config", "filter.evil.clean", f"touch {marker}.filter; cat")
    (path / ".gitattributes").write_text("* filter=evil\n")
    hook = path / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}.hook\n")
    hook.chmod(0o755)


def test_agent_config_and_hooks_never_run_in_pagents_calls(
    made: Workspace, repo: Path, tmp_path: Path
) -> None:
    """An fsmonitor, a clean filter and a hook the agent set up run in none of pagent's calls
    (collect auto-commits: status, add, commit), while the same traps fire for a plain git."""
    marker = tmp_path / "pwned"
    start = head(repo, "main")
    plant_traps(made.path, marker)
    (made.path / "README.md").write_text("test repositorY\n")  # same size: status must hash it
    facts = clones.collect(made, collect_request(1, start, start))
    assert facts.auto_committed
    assert not list(tmp_path.glob("pwned*"))
    assert "evil" not in (made.path / ".git" / "config").read_text()
    plant_traps(made.path, marker)
    (made.path / "README.md").write_text("test repositorX\n")
    git(made.path, "add", "README.md")
    git(made.path, "commit", "--quiet", "-m", "control")
    assert sorted(p.name for p in tmp_path.glob("pwned*")) == [
        "pwned.filter",
        "pwned.fsmonitor",
        "pwned.hook",
    ]


def test_auto_commit_runs_through_the_confinement_wrapper(made: Workspace, repo: Path) -> None:
    """With a confinement, the git calls that read the agent's files (status, add, commit) run
    as the wrapper makes them; those in the main repository (fetch, update-ref) do not."""
    seen: list[tuple[str, ...]] = []

    def wrap(argv: Sequence[str], cwd: Path) -> Sequence[str]:
        seen.append((str(cwd), *argv))
        return argv

    start = head(repo, "main")
    (made.path / "w.txt").write_text("w\n")
    clones.collect(made, collect_request(1, start, start), wrap)
    verbs = {next(a for a in call[2:] if not a.startswith("-") and "=" not in a) for call in seen}
    assert {"status", "add", "commit"} <= verbs
    assert {call[0] for call in seen} == {str(made.path)}
    assert head(repo, BRANCH) == head(made.path)


def test_gc_prune_in_the_main_repository_keeps_the_clone_whole(made: Workspace, repo: Path) -> None:
    start = head(repo, "main")
    commit(made.path, "a.txt", "a\n")
    clones.collect(made, collect_request(1, start, start))
    git(repo, "commit", "--quiet", "--allow-empty", "-m", "main moves on")
    git(repo, "gc", "--quiet", "--prune=now")
    git(made.path, "fsck", "--no-dangling")


def test_git_environment_cannot_redirect_pagents_calls(
    made: Workspace, repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoy = tmp_path / "decoy"
    git(tmp_path, "init", "--quiet", str(decoy))
    commit_env = dict(os.environ)
    start = head(repo, "main")
    monkeypatch.setenv("GIT_DIR", str(decoy / ".git"))
    monkeypatch.setenv("GIT_WORK_TREE", str(decoy))
    (made.path / "a.txt").write_text("a\n")
    subprocess.run(["git", "add", "a.txt"], cwd=made.path, env=commit_env, check=True)
    subprocess.run(["git", "commit", "-qm", "work"], cwd=made.path, env=commit_env, check=True)
    assert clones.collect(made, collect_request(1, start, start)).on_branch
    assert subprocess.run(["git", "for-each-ref"], cwd=decoy, capture_output=True, text=True).stdout == ""


def test_a_branch_name_with_a_quote_survives_the_trusted_config(repo: Path, tmp_path: Path) -> None:
    git(repo, "branch", 'fix/a"b')
    clone.make_clone(repo, tmp_path / "q", 'fix/a"b')
    assert git(tmp_path / "q", "config", 'branch.fix/a"b.merge').strip() == 'refs/heads/fix/a"b'
