"""A structured result as a verdict: its ``status`` decides, a result that breaks the schema fails."""

from __future__ import annotations

import json

import pytest

from supervisor.reasons import Reason
from supervisor.results.structured import judge_result

SCHEMA = json.dumps(
    {
        "type": "object",
        "properties": {
            "status": {"type": "string"},
            "question": {"type": "string"},
            "reason": {"type": "string"},
            "files": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["status"],
    }
)
FREE = json.dumps({"type": "object"})  # no status field required


@pytest.mark.parametrize(
    ("output", "succeeded", "reason", "optional"),
    [
        ({"status": "done"}, True, "ok", False),
        ({"status": "nothing_to_do"}, True, "ok", True),
        ({"status": "needs_input", "question": "SQLite or PostgreSQL?"}, False, "needs-input", False),
        (
            {"status": "failed", "reason": "the tests need a database"},
            False,
            "agent-failed: the tests need a database",
            False,
        ),
        ({"status": "failed"}, False, "agent-failed: no reason given", False),
        (
            {"status": "blocked"},
            False,
            "result-invalid: unknown status 'blocked' (done, nothing_to_do, needs_input, failed)",
            False,
        ),
    ],
)
def test_status_decides(output: dict[str, str], succeeded: bool, reason: str, optional: bool) -> None:
    verdict = judge_result(SCHEMA, True, "ok", output)
    assert (verdict.succeeded, verdict.reason, verdict.changes_optional) == (succeeded, reason, optional)


def test_needs_input_keeps_the_question_for_a_person() -> None:
    verdict = judge_result(SCHEMA, True, "ok", {"status": "needs_input", "question": "Which port?"})
    assert verdict.detail == {"question": "Which port?"}
    assert Reason.of(verdict.reason) is Reason.NEEDS_INPUT
    empty = judge_result(SCHEMA, True, "ok", {"status": "needs_input"})
    assert empty.detail["question"].startswith("(the agent asked for input")


def test_a_result_without_status_succeeds_when_the_schema_allows_it() -> None:
    assert judge_result(FREE, True, "ok", {"summary": "all fine"}).succeeded


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        (None, "result-invalid: the agent returned no structured result"),
        ({"question": "?"}, "result-invalid: 'status' is a required property"),
        ({"status": 3}, "result-invalid: 3 is not of type 'string' (at status)"),
        ({"status": "done", "files": ["a", 2]}, "result-invalid: 2 is not of type 'string' (at files/1)"),
        ("done", "result-invalid: 'done' is not of type 'object'"),
    ],
)
def test_a_result_that_breaks_the_schema_fails(output: object, expected: str) -> None:
    verdict = judge_result(SCHEMA, True, "ok", output)
    assert (verdict.succeeded, verdict.reason) == (False, expected)
    assert Reason.of(verdict.reason) is Reason.RESULT_INVALID


def test_the_kinds_own_failure_stands() -> None:
    """An attempt the agent kind failed (denied tool calls, an API error) keeps its reason."""
    for reason in ("needs-input", "api-error 500", "max-turns"):
        verdict = judge_result(SCHEMA, False, reason, {"status": "done"})
        assert (verdict.succeeded, verdict.reason, verdict.detail) == (False, reason, {})


def test_reasons_with_detail_are_classified() -> None:
    assert Reason.of("setup: `make deps` exit 2") is Reason.SETUP
    assert Reason.of("setup") is Reason.SETUP
    assert Reason.of("mcp-failed: db (failed)") is Reason.MCP_FAILED
    assert Reason.of("agent-failed: x") is Reason.AGENT_FAILED
    assert Reason.SETUP.detail("`x` exit 1") == "setup: `x` exit 1"
