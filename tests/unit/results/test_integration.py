"""After a wave: ``after_wave`` reports overlaps and merges on a real repository and records
nothing itself; a branch git cannot merge into is reported, not raised."""

from __future__ import annotations

from pathlib import Path

from supervisor.results.integration import Integration, after_wave
from tests.conftest import git


def branch_with(repo: Path, branch: str, files: dict[str, str]) -> None:
    """A branch off main with one commit writing ``files``."""
    git(repo, "checkout", "-q", "-b", branch, "main")
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "--", *files)
    git(repo, "commit", "-q", "-m", f"work on {branch}")
    git(repo, "checkout", "-q", "main")


def test_after_wave_merges_clean_branches_and_reports_the_conflict(repo: Path, tmp_path: Path) -> None:
    """a and b both change shared.txt (an overlap, and b's merge conflicts after a's); c is
    independent; the base and the task branches do not move."""
    git(repo, "branch", "-M", "main")
    base = git(repo, "rev-parse", "main").strip()
    branch_with(repo, "t/a", {"shared.txt": "from a\n"})
    branch_with(repo, "t/b", {"shared.txt": "from b\n", "b.txt": "b\n"})
    branch_with(repo, "t/c", {"c.txt": "c\n"})
    tips = {b: git(repo, "rev-parse", b).strip() for b in ("t/a", "t/b", "t/c")}
    paths = {"a": ["shared.txt"], "b": ["b.txt", "shared.txt"], "c": ["c.txt"]}
    integration = Integration(repo, tmp_path / "integration", "pagent/all", base)
    found = after_wave(paths, [("a", "t/a"), ("b", "t/b"), ("c", "t/c")], integration, "wave {1}")
    assert [(o.tasks, o.paths) for o in found.overlaps] == [(("a", "b"), ("shared.txt",))]
    merged = {m.task_id: (m.merged, m.conflicts) for m in found.merges}
    assert merged == {"a": (True, ()), "b": (False, ("shared.txt",)), "c": (True, ())}
    assert [m.task_id for m in found.merges] == ["c", "a", "b"]  # fewest overlaps first
    assert found.skipped is None
    assert git(repo, "rev-parse", "main").strip() == base
    assert {b: git(repo, "rev-parse", b).strip() for b in tips} == tips
    log = git(repo, "log", "--format=%s", "pagent/all")
    assert "pagent: merge t/a (wave {1})" in log
    assert "t/b" not in log


def test_without_an_integration_branch_only_overlaps_are_found(repo: Path) -> None:
    found = after_wave({"a": ["x"], "b": ["x"]}, [("a", "t/a")], None, "w")
    assert [o.tasks for o in found.overlaps] == [("a", "b")]
    assert found.merges == []


def test_an_integration_git_refuses_is_reported_as_skipped(repo: Path, tmp_path: Path) -> None:
    """A path in the way of the integration worktree: skipped with git's words, nothing raised."""
    (tmp_path / "in-the-way").write_text("not a worktree")
    integration = Integration(
        repo, tmp_path / "in-the-way", "pagent/all", git(repo, "rev-parse", "HEAD").strip()
    )
    found = after_wave({}, [("a", "t/a")], integration, "w")
    assert found.merges == []
    assert found.skipped is not None
    assert "exists and is not the worktree" in found.skipped
