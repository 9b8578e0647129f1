"""The checks as pure verdicts: work off its branch or a rewritten history never succeeds, and
refs that others moved are found (pagent's own are not)."""

from __future__ import annotations

from supervisor.plan.model import TaskSettings
from supervisor.reasons import Reason
from supervisor.results.checks import judge, moved_line, moved_refs
from supervisor.seam import Facts

SETTINGS = TaskSettings()


def facts(**given: object) -> Facts:
    return Facts(False, False, ("a.txt",), None, **given)  # type: ignore[arg-type]


def test_work_off_its_branch_fails_with_its_own_reason_and_says_where_head_is() -> None:
    verdict = judge(SETTINGS, True, "ok", facts(on_branch=False, head="h", branch_tip=None), "")
    assert (verdict.succeeded, verdict.reason) == (False, Reason.NOT_ON_BRANCH.value)
    assert verdict.detail["off_branch"] == {"head": "h", "branch": None}


def test_a_rewritten_history_fails() -> None:
    verdict = judge(SETTINGS, True, "ok", facts(descends=False, branch_tip="t"), "")
    assert (verdict.succeeded, verdict.reason) == (False, Reason.HISTORY_REWRITTEN.value)


def test_the_agents_own_failure_keeps_its_reason() -> None:
    verdict = judge(SETTINGS, False, "exit 3", facts(on_branch=False), "")
    assert (verdict.succeeded, verdict.reason) == (False, "exit 3")
    assert "off_branch" in verdict.detail


def test_on_its_branch_the_pins_are_in_the_detail() -> None:
    verdict = judge(SETTINGS, True, "ok", facts(pinned=("refs/pagent/r/a/1",)), "")
    assert verdict.succeeded
    assert verdict.detail["pinned"] == ["refs/pagent/r/a/1"]


def test_moved_refs_lists_changes_except_the_runs_own() -> None:
    before = {"refs/heads/main": "1", "refs/heads/pagent/h/a": "1", "refs/tags/gone": "3"}
    after = {"refs/heads/main": "2", "refs/heads/pagent/h/a": "9", "refs/heads/new": "4"}
    moved = moved_refs(before, after, {"refs/heads/pagent/h/a"})
    assert moved == [
        {"ref": "refs/heads/main", "before": "1", "after": "2"},
        {"ref": "refs/heads/new", "before": None, "after": "4"},
        {"ref": "refs/tags/gone", "before": "3", "after": None},
    ]
    assert moved_line(moved[0], "a", 1) == "refs/heads/main moved 1 -> 2 while a (attempt 1) ran"
    assert moved_line(moved[1], "a", 2) == "refs/heads/new created at 4 while a (attempt 2) ran"
