"""Git facts about a task's work, on real repositories in tmp_path."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from supervisor.errors import GitError
from supervisor.results.integration import MergeResult, Overlap, integrate, merge_order, overlaps
from supervisor.workspace.facts import DiffStats, auto_commit, diff_stats, head
from tests.conftest import git

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

MARKER = ".pagent-done"


@pytest.fixture
def task(repo: Path) -> Path:
    """A task worktree on branch ``task`` started from ``main``."""
    path = repo.parent / "wt-task"
    git(repo, "worktree", "add", "--quiet", "-b", "task", str(path), "main")
    return path


def commit_files(path: Path, files: dict[str, str], message: str = "work") -> str:
    """Write ``files`` in ``path``, commit them all and return the new HEAD."""
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        git(path, "add", "--", name)
    git(path, "commit", "--quiet", "-m", message)
    return git(path, "rev-parse", "HEAD").strip()


def committed_paths(path: Path, rev: str = "HEAD") -> set[str]:
    """Every path in the tree of ``rev``."""
    return set(git(path, "ls-tree", "-r", "--name-only", "-z", rev).split("\0")) - {""}


def test_head_is_the_commit_sha(repo: Path) -> None:
    """head() returns the full sha HEAD points at."""
    assert head(repo) == git(repo, "rev-parse", "HEAD").strip()


def test_two_committed_files_with_exact_line_counts(task: Path) -> None:
    """Two files in two commits: 2 commits, 2 files, the exact insertions and deletions."""
    commit_files(task, {"a.py": "1\n2\n3\n"}, "first")
    commit_files(task, {"README.md": "replaced\nand more\n", "a.py": "1\n2\n3\n4\n"}, "second")
    stats = diff_stats(task, "main")
    assert stats == DiffStats(
        commits=2, files=2, insertions=6, deletions=1, paths=("README.md", "a.py"), uncommitted=False
    )
    assert stats.to_dict() == {
        "commits": 2,
        "files": 2,
        "insertions": 6,
        "deletions": 1,
        "paths": ["README.md", "a.py"],
        "uncommitted": False,
    }


def test_diff_is_against_the_merge_base(task: Path, repo: Path) -> None:
    """Commits added to the base after the task started do not count as the task's changes."""
    commit_files(task, {"mine.txt": "x\n"})
    commit_files(repo, {"theirs.txt": "y\ny\n"})
    stats = diff_stats(task, "main")
    assert (stats.commits, stats.files, stats.paths) == (1, 1, ("mine.txt",))


def test_binary_files_count_as_files_without_lines(task: Path) -> None:
    """A binary file is one changed file with 0 insertions and 0 deletions."""
    (task / "blob.bin").write_bytes(bytes(range(256)) * 4)
    git(task, "add", "blob.bin")
    git(task, "commit", "--quiet", "-m", "binary")
    stats = diff_stats(task, "main")
    assert (stats.files, stats.insertions, stats.deletions, stats.paths) == (1, 0, 0, ("blob.bin",))


def test_a_rename_counts_old_and_new_paths(task: Path) -> None:
    """A rename is reported as the old path deleted and the new path added, whatever diff.renames says."""
    git(task, "config", "diff.renames", "true")
    git(task, "mv", "README.md", "docs.md")
    git(task, "commit", "--quiet", "-m", "rename")
    stats = diff_stats(task, "main")
    assert (stats.files, stats.insertions, stats.deletions) == (2, 1, 1)
    assert stats.paths == ("README.md", "docs.md")


def test_odd_path_names_are_reported_verbatim(task: Path) -> None:
    """Paths with spaces, tabs or non-ASCII letters come back unquoted."""
    commit_files(task, {"dir one/caf\u00e9\tx.txt": "1\n"})
    assert diff_stats(task, "main").paths == ("dir one/caf\u00e9\tx.txt",)


def test_uncommitted_detects_modified_and_untracked_files(task: Path) -> None:
    """uncommitted is true for a modified tracked file and for a new untracked file alone."""
    assert diff_stats(task, "main").uncommitted is False
    (task / "README.md").write_text("edited\n")
    assert diff_stats(task, "main").uncommitted is True
    git(task, "checkout", "--quiet", "--", "README.md")
    (task / "new" / "deep").mkdir(parents=True)
    (task / "new" / "deep" / "file.txt").write_text("new\n")
    assert diff_stats(task, "main").uncommitted is True


def test_uncommitted_ignores_excluded_paths(task: Path) -> None:
    """A completion marker alone does not count as uncommitted work when excluded."""
    (task / MARKER).write_text("done\n")
    assert diff_stats(task, "main").uncommitted is True
    assert diff_stats(task, "main", exclude=[MARKER]).uncommitted is False


def test_unknown_base_is_a_git_error(task: Path) -> None:
    """A base that does not exist raises GitError instead of reporting zeros."""
    with pytest.raises(GitError):
        diff_stats(task, "no-such-branch")


def test_auto_commit_commits_modified_new_and_deleted_but_never_the_marker(task: Path) -> None:
    """Modified, new (in a new directory), deleted and half-staged changes go in; the marker never."""
    commit_files(task, {"keep.txt": "1\n", "gone.txt": "bye\n", "staged.txt": "a\n"})
    before = head(task)
    (task / "keep.txt").write_text("1\n2\n")
    (task / "gone.txt").unlink()
    (task / "pkg" / "sub").mkdir(parents=True)
    (task / "pkg" / "sub" / "new.py").write_text("x = 1\n")
    (task / "staged.txt").write_text("a\nb\n")
    git(task, "add", "staged.txt")
    (task / "staged.txt").write_text("a\nb\nc\n")  # half-staged: more edits after `git add`
    (task / MARKER).write_text("done\n")
    git(task, "add", MARKER)  # the agent staged the marker itself

    assert auto_commit(task, "pagent: uncommitted work", exclude=[MARKER]) is True

    assert git(task, "rev-parse", "HEAD~1").strip() == before
    assert git(task, "log", "-1", "--format=%s").strip() == "pagent: uncommitted work"
    paths = committed_paths(task)
    assert "gone.txt" not in paths
    assert {"keep.txt", "pkg/sub/new.py", "staged.txt"} <= paths
    assert MARKER not in paths
    assert git(task, "show", "HEAD:staged.txt") == "a\nb\nc\n"
    assert git(task, "show", "HEAD:keep.txt") == "1\n2\n"
    # The marker stays in the worktree, untracked and unstaged; nothing else is left over.
    assert (task / MARKER).read_text() == "done\n"
    assert git(task, "status", "--porcelain") == f"?? {MARKER}\n"


def test_auto_commit_excludes_by_absolute_path_and_directory(task: Path) -> None:
    """Exclusions may be absolute paths in the worktree, and a directory excludes its contents."""
    (task / "work.txt").write_text("w\n")
    (task / ".pagent").mkdir()
    (task / ".pagent" / "state.json").write_text("{}\n")
    (task / "m*rk[er]").write_text("glob characters are literal\n")
    assert auto_commit(task, "auto", exclude=[str(task / ".pagent") + "/", str(task / "m*rk[er]")]) is True
    assert committed_paths(task) == {"README.md", "work.txt"}


def test_auto_commit_without_changes_makes_no_commit(task: Path) -> None:
    """A clean worktree, or one where only the marker changed, gets no commit."""
    before = head(task)
    assert auto_commit(task, "auto", exclude=[MARKER]) is False
    (task / MARKER).write_text("done\n")
    git(task, "add", MARKER)
    assert auto_commit(task, "auto", exclude=[MARKER]) is False
    assert head(task) == before
    assert MARKER not in committed_paths(task)


def test_auto_commit_without_any_configured_identity(
    task: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no HOME config and no GIT_* identity (as under cron), the commit uses pagent's identity."""
    home = tmp_path / "empty-home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in ("NAME", "EMAIL"):
        for who in ("AUTHOR", "COMMITTER"):
            monkeypatch.delenv(f"GIT_{who}_{key}", raising=False)
    monkeypatch.delenv("EMAIL", raising=False)
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    (task / "new.txt").write_text("n\n")

    assert auto_commit(task, "auto") is True

    ident = subprocess.run(
        ["git", "log", "-1", "--format=%an <%ae>|%cn <%ce>"],
        cwd=task,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ},
    ).stdout.strip()
    assert ident == "pagent <pagent@localhost>|pagent <pagent@localhost>"


def test_auto_commit_keeps_a_configured_identity(task: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the repository has an identity, auto_commit does not replace it."""
    for key in ("NAME", "EMAIL"):
        for who in ("AUTHOR", "COMMITTER"):
            monkeypatch.delenv(f"GIT_{who}_{key}", raising=False)
    git(task, "config", "user.name", "Night Owl")
    git(task, "config", "user.email", "owl@example.invalid")
    (task / "new.txt").write_text("n\n")
    assert auto_commit(task, "auto") is True
    assert git(task, "log", "-1", "--format=%an <%ae>").strip() == "Night Owl <owl@example.invalid>"


def test_auto_commit_skips_failing_hooks(task: Path, repo: Path) -> None:
    """A pre-commit hook that fails does not keep the night's work uncommitted."""
    hook = Path(git(repo, "rev-parse", "--git-path", "hooks").strip())
    hook = hook if hook.is_absolute() else repo / hook
    hook.mkdir(parents=True, exist_ok=True)
    (hook / "pre-commit").write_text("#!/bin/sh\nexit 1\n")
    (hook / "pre-commit").chmod(0o755)
    (task / "new.txt").write_text("n\n")
    assert auto_commit(task, "auto") is True


def test_overlaps_lists_pairs_in_task_order_with_sorted_paths() -> None:
    """Each intersecting pair appears once, in the given order, with its shared paths sorted."""
    found = overlaps(
        {
            "a": ["src/x.py", "src/y.py", "README.md"],
            "b": ["docs/z.md"],
            "c": ["src/y.py", "src/x.py"],
            "d": ["README.md", "docs/z.md"],
        }
    )
    assert found == [
        Overlap(tasks=("a", "c"), paths=("src/x.py", "src/y.py")),
        Overlap(tasks=("a", "d"), paths=("README.md",)),
        Overlap(tasks=("b", "d"), paths=("docs/z.md",)),
    ]
    assert found[0].to_dict() == {"tasks": ["a", "c"], "paths": ["src/x.py", "src/y.py"]}
    assert overlaps({"a": ["x"], "b": ["y"], "c": []}) == []


def test_merge_order_puts_the_most_overlapping_task_last() -> None:
    """Fewest overlaps first, ties kept in the given order, unknown tasks in overlaps ignored."""
    hub = [Overlap(("a", "b"), ("f",)), Overlap(("a", "c"), ("f",)), Overlap(("a", "d"), ("g",))]
    assert merge_order(["a", "b", "c", "d", "e"], hub) == ["e", "b", "c", "d", "a"]
    assert merge_order(["x", "y"], []) == ["x", "y"]
    assert merge_order(["b", "c"], [*hub, Overlap(("b", "zz"), ("q",))]) == ["b", "c"]


def branch_head(repo: Path, branch: str) -> str:
    return git(repo, "rev-parse", f"refs/heads/{branch}").strip()


def test_integrate_merges_clean_records_conflicts_and_goes_on(repo: Path) -> None:
    """A clean merge, a conflicting one (aborted, path recorded) and a later clean one that still merges."""
    commit_files(repo, {"shared.txt": "base\n"}, "shared file")
    base = head(repo)
    for branch, files in {
        "t-one": {"shared.txt": "one\n", "one.txt": "1\n"},
        "t-two": {"shared.txt": "two\n"},
        "t-three": {"three.txt": "3\n"},
    }.items():
        git(repo, "branch", branch, "main")
        wt = repo.parent / f"wt-{branch}"
        git(repo, "worktree", "add", "--quiet", str(wt), branch)
        commit_files(wt, files, branch)
    tips = {b: branch_head(repo, b) for b in ("t-one", "t-two", "t-three")}
    integration = repo.parent / "wt-nightly"
    git(repo, "worktree", "add", "--quiet", "-b", "nightly", str(integration), "main")

    results = integrate(integration, [("one", "t-one"), ("two", "t-two"), ("three", "t-three")])

    one, two, three = results
    assert (one.merged, one.conflicts) == (True, ())
    assert one.commit is not None
    assert two == MergeResult("two", "t-two", merged=False, conflicts=("shared.txt",), commit=None)
    assert three.merged
    assert three.commit == head(integration)
    assert two.to_dict() == {
        "task": "two",
        "branch": "t-two",
        "merged": False,
        "conflicts": ["shared.txt"],
        "commit": None,
        "error": None,
    }
    # The abort left the integration worktree clean, with the clean merges in its history.
    assert git(integration, "status", "--porcelain") == ""
    assert (integration / "shared.txt").read_text() == "one\n"
    assert (integration / "three.txt").read_text() == "3\n"
    parents = git(integration, "log", "--format=%P", "-2").split("\n")
    assert all(len(line.split()) == 2 for line in parents if line)  # --no-ff merge commits
    # Nothing but the integration branch moved.
    assert {b: branch_head(repo, b) for b in tips} == tips
    assert branch_head(repo, "main") == base


def test_integrate_already_merged_counts_as_merged(repo: Path) -> None:
    """Merging a branch the integration branch already contains is merged, with no new commit."""
    git(repo, "branch", "t-old", "main")
    integration = repo.parent / "wt-nightly"
    git(repo, "worktree", "add", "--quiet", "-b", "nightly", str(integration), "main")
    before = head(integration)
    [result] = integrate(integration, [("old", "t-old")])
    assert result == MergeResult("old", "t-old", merged=True, conflicts=(), commit=None)
    assert head(integration) == before


def test_integrate_unknown_branch_is_recorded_not_raised(repo: Path) -> None:
    """A branch that does not exist is a failed merge with a reason; the others still merge."""
    git(repo, "branch", "t-ok", "main")
    wt = repo.parent / "wt-ok"
    git(repo, "worktree", "add", "--quiet", str(wt), "t-ok")
    commit_files(wt, {"ok.txt": "ok\n"})
    integration = repo.parent / "wt-nightly"
    git(repo, "worktree", "add", "--quiet", "-b", "nightly", str(integration), "main")
    missing, ok = integrate(integration, [("gone", "t-gone"), ("ok", "t-ok")], message="merge {task}")
    assert (missing.merged, missing.error) == (False, "no such branch")
    assert ok.merged
    assert git(integration, "log", "-1", "--format=%s").strip() == "merge ok"


def test_integrate_refuses_a_dirty_worktree(repo: Path) -> None:
    """Uncommitted changes in the integration worktree raise before any merge is tried."""
    (repo / "README.md").write_text("dirty\n")
    with pytest.raises(GitError, match="uncommitted"):
        integrate(repo, [("x", "main")])
