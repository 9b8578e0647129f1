"""Copies into a new workspace on real repositories: ``copy`` entries and ``.worktreeinclude``
(git-ignored matches only), never through a symlink out of the main worktree, never over a file
the workspace has, and never committed by pagent afterwards."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from supervisor.seam import CollectRequest
from supervisor.workspace import local
from supervisor.workspace.copying import copy_in, included_files
from supervisor.workspace.refs import Wish, pins, reserve
from tests.conftest import git
from tests.unit.workspace.test_worktrees import request, tip


@pytest.fixture
def main(repo: Path) -> Path:
    """The main worktree: tracked files, an ignore file, and untracked things to copy."""
    (repo / ".gitignore").write_text(".env\n*.local\nsecrets/\nbuild/\n")
    (repo / "config").mkdir()
    (repo / "config" / "app.toml").write_text("tracked\n")
    git(repo, "add", ".gitignore", "config/app.toml")
    git(repo, "commit", "--quiet", "-m", "layout")
    (repo / ".env").write_text("TOKEN=s3cret\n")
    (repo / ".env").chmod(0o600)
    (repo / "config" / "dev.local").write_text("local config\n")
    (repo / "config" / "notes.txt").write_text("untracked, not ignored\n")
    (repo / "secrets").mkdir()
    (repo / "secrets" / "key.pem").write_text("KEY\n")
    (repo / "build").mkdir()
    (repo / "build" / "out.bin").write_text("artefact\n")
    return repo


def workspace_of(main: Path, tmp_path: Path) -> Path:
    target = tmp_path / "wt"
    git(main, "worktree", "add", "--quiet", "-b", "task", str(target), "HEAD")
    return target


def test_copy_entries_files_and_directories(main: Path, tmp_path: Path) -> None:
    work = workspace_of(main, tmp_path)
    copied = copy_in(main, work, [".env", "secrets", "config/notes.txt"])
    assert (work / ".env").read_text() == "TOKEN=s3cret\n"
    assert oct((work / ".env").stat().st_mode & 0o777) == "0o600"  # the mode comes along
    assert (work / "secrets" / "key.pem").read_text() == "KEY\n"
    assert (work / "config" / "notes.txt").is_file()
    assert copied == (".env", "secrets", "config/notes.txt")


def test_worktreeinclude_copies_only_ignored_matches(main: Path, tmp_path: Path) -> None:
    """Claude Code's rule: a file is copied when it matches a pattern *and* git ignores it."""
    (main / ".worktreeinclude").write_text("# what worktrees need\n.env\n**/*.local\nconfig/*\n!build/\n")
    assert included_files(main) == [".env", "config/dev.local"]  # notes.txt: not ignored; app.toml: tracked
    work = workspace_of(main, tmp_path)
    copied = copy_in(main, work, [])
    assert copied == (".env", "config/dev.local")
    assert (work / "config" / "dev.local").read_text() == "local config\n"
    assert not (work / "config" / "notes.txt").exists()
    assert not (work / "build").exists()
    assert (work / "config" / "app.toml").read_text() == "tracked\n"


def test_no_worktreeinclude_no_copies(main: Path, tmp_path: Path) -> None:
    assert included_files(main) == []
    assert copy_in(main, workspace_of(main, tmp_path), []) == ()


def test_worktreeinclude_must_be_a_regular_file(main: Path) -> None:
    (main / "elsewhere").write_text(".env\n")
    (main / ".worktreeinclude").symlink_to(main / "elsewhere")
    with pytest.raises(OSError, match="not a regular file"):
        included_files(main)


def test_never_through_a_symlink_out_of_the_main_worktree(main: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "passwords").write_text("not yours\n")
    (main / "leak").symlink_to(outside / "passwords")
    work = workspace_of(main, tmp_path)
    with pytest.raises(OSError, match=r"copy: 'leak' leads out of the main worktree"):
        copy_in(main, work, ["leak"])
    (main / "secrets" / "link").symlink_to(outside)
    with pytest.raises(OSError, match=r"copy: 'secrets/link' leads out of the main worktree"):
        copy_in(main, work, ["secrets"])
    assert not (work / "leak").exists()


def test_symlinks_inside_are_followed_and_loops_end(main: Path, tmp_path: Path) -> None:
    (main / "secrets" / "again").symlink_to(main / "secrets")  # a loop
    (main / "env-link").symlink_to(main / ".env")
    work = workspace_of(main, tmp_path)
    copy_in(main, work, ["secrets", "env-link"])
    assert (work / "env-link").read_text() == "TOKEN=s3cret\n"
    assert not (work / "env-link").is_symlink()  # the content, not a link back to the main worktree
    assert (work / "secrets" / "key.pem").is_file()


def test_never_over_a_file_the_workspace_has(main: Path, tmp_path: Path) -> None:
    (main / "config" / "app.toml").write_text("changed in the main worktree\n")
    work = workspace_of(main, tmp_path)
    (work / ".env").write_text("the workspace's own\n")
    copied = copy_in(main, work, [".env", "config"])
    assert (work / ".env").read_text() == "the workspace's own\n"
    assert (work / "config" / "app.toml").read_text() == "tracked\n"
    # The directory holds a tracked file: only its untracked files are kept out of commits.
    assert copied == (".env", "config/notes.txt")


def test_missing_entries_fifos_and_git_are_refused(main: Path, tmp_path: Path) -> None:
    work = workspace_of(main, tmp_path)
    with pytest.raises(OSError, match=r"copy: 'nope': no such file or directory in the main worktree"):
        copy_in(main, work, ["nope"])
    os.mkfifo(main / "pipe")
    with pytest.raises(OSError, match="neither a regular file nor a directory"):
        copy_in(main, work, ["pipe"])
    (main / "gitlink").symlink_to(main / ".git")
    with pytest.raises(OSError, match=r"leads into git's own '\.git'"):
        copy_in(main, work, ["gitlink"])


def test_never_written_outside_the_workspace(main: Path, tmp_path: Path) -> None:
    """A directory of the workspace that is a symlink elsewhere (its branch may hold one) is no
    way out: nothing is written through it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (main / "cache").mkdir()
    (main / "cache" / "k").write_text("k\n")
    work = workspace_of(main, tmp_path)
    (work / "cache").symlink_to(elsewhere)
    with pytest.raises(OSError, match=r"copy: 'cache' would be written outside the workspace"):
        copy_in(main, work, ["cache"])
    assert list(elsewhere.iterdir()) == []


def test_prepare_copies_and_collect_never_commits_them(main: Path, tmp_path: Path) -> None:
    """Through the local workspaces: copied, excluded from auto-commit and from "uncommitted"."""
    reserve(main, [Wish("pagent/h/a")], tip(main, "main"), "R1")
    wanted = request(main, tmp_path, copy=(".env", "config/notes.txt"))
    workspace = local.prepare(wanted)
    assert workspace.created
    assert workspace.copied == (".env", "config/notes.txt")
    (workspace.path / "work.txt").write_text("the agent's\n")
    (workspace.path / "config" / "notes.txt").write_text("the agent touched the copy\n")
    begun_head = tip(workspace.path, "HEAD")
    facts = local.collect(
        workspace,
        CollectRequest(
            "a", 1, "ok", begun_head, begun_head, auto_commit=True, marker=None, pins=pins("R1", "a")
        ),
    )
    assert facts.auto_committed
    committed = git(workspace.path, "show", "--name-only", "--format=", "HEAD").split()
    assert committed == ["work.txt"]
    assert facts.diff is not None
    assert not facts.diff.uncommitted
    assert facts.diff.paths == ("work.txt",)
    # Prepared again (a retry): nothing is copied over, the exclusions stay.
    (main / ".env").write_text("TOKEN=rotated\n")
    again = local.prepare(
        request(main, tmp_path, copy=(".env", "config/notes.txt"), fresh=False, expect=None)
    )
    assert not again.created
    assert again.copied == (".env", "config/notes.txt")
    assert (again.path / ".env").read_text() == "TOKEN=s3cret\n"
