"""Branch reservation on a real repository: create-only and atomic, suffixed when a name is taken
or cannot exist beside another, never moving an existing branch; pins and snapshots."""

from __future__ import annotations

from pathlib import Path

import pytest

from supervisor.workspace import refs
from supervisor.workspace.refs import Wish, reserve
from tests.conftest import git as their_git


def tip(repo: Path, ref: str) -> str:
    return their_git(repo, "rev-parse", ref).strip()


@pytest.fixture
def base(repo: Path) -> str:
    return tip(repo, "HEAD")


def test_free_names_are_created_at_the_commit(repo: Path, base: str) -> None:
    got = reserve(repo, [Wish("pagent/h/a", reshape=True), Wish("integ")], base, "R1")
    assert got == ["pagent/h/a", "integ"]
    assert tip(repo, "pagent/h/a") == tip(repo, "integ") == base


def test_a_taken_name_gets_the_run_id_and_the_existing_branch_does_not_move(repo: Path, base: str) -> None:
    their_git(repo, "commit", "--quiet", "--allow-empty", "-m", "theirs")
    theirs = tip(repo, "HEAD")
    their_git(repo, "branch", "pagent/h/a")
    got = reserve(repo, [Wish("pagent/h/a", reshape=True), Wish("pagent/h/a", reshape=True)], base, "R1")
    assert got == ["pagent/h/a-R1", "pagent/h/a-R1-2"]
    assert tip(repo, "pagent/h/a") == theirs


def test_a_name_that_cannot_exist_beside_another_is_flattened_if_pagent_chose_it(
    repo: Path, base: str
) -> None:
    """Plan "h" made ``pagent/h/x``; plan "h/x" wants ``pagent/h/x/y`` (a directory/file clash)."""
    their_git(repo, "branch", "pagent/h/x")
    got = reserve(repo, [Wish("pagent/h/x/y", reshape=True), Wish("pagent/h", reshape=True)], base, "R1")
    assert got == ["pagent/h-x-y", "pagent/h-R1"]


def test_a_name_the_plan_gave_is_never_reshaped(repo: Path, base: str) -> None:
    """The user's ``fix`` makes ``fix/one`` impossible: unreserved, so its worktree fails later
    with git's own words (README: a branch you named is used as you named it)."""
    their_git(repo, "branch", "fix")
    assert reserve(repo, [Wish("fix/one"), Wish("other")], base, "R1") == [None, "other"]
    assert their_git(repo, "branch", "--list", "fix/*") == ""


def test_a_name_taken_meanwhile_is_never_moved_the_transaction_retries(
    repo: Path, base: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Someone creates ``pagent/h/a`` between pagent's look and its transaction: git refuses the
    whole transaction (nothing created), pagent looks again and takes the suffix."""
    their_git(repo, "commit", "--quiet", "--allow-empty", "-m", "racer")
    racer = tip(repo, "HEAD")
    looked = refs.local_branches
    calls = []

    def stale(path: Path) -> set[str]:
        names = looked(path)
        if not calls:
            their_git(repo, "branch", "pagent/h/a", racer)  # after the look, before the transaction
        calls.append(1)
        return names

    monkeypatch.setattr(refs, "local_branches", stale)
    got = reserve(repo, [Wish("pagent/h/b", reshape=True), Wish("pagent/h/a", reshape=True)], base, "R1")
    assert got == ["pagent/h/b", "pagent/h/a-R1"]
    assert len(calls) == 2
    assert tip(repo, "pagent/h/a") == racer


def test_pins_and_snapshots(repo: Path, base: str) -> None:
    refs.pin(repo, f"{refs.pins('R1', 'a')}/1", base, "test")
    their_git(repo, "tag", "v1")
    seen = refs.snapshot(repo)
    assert seen["refs/tags/v1"] == base
    assert seen["refs/heads/main"] == base
    assert not any(name.startswith("refs/pagent/") for name in seen)  # pins are not watched
    assert tip(repo, "refs/pagent/R1/a/1") == base
    assert refs.integration_pins("R1") == "refs/pagent/R1/+integration"
