"""The claude parser on the recorded transcripts of the headless features (``--json-schema``,
``--fallback-model``, MCP servers that cannot start, ``--session-id``), fed whole and in chunks.

The transcripts are the real CLI 2.1.328's output (``python -m tests.transcripts.record_headless``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from supervisor.agents.claude import ClaudeParser, answered_by
from supervisor.seam import Exit

HEADLESS = Path(__file__).parents[2] / "transcripts" / "claude-headless"
SESSION = "7d1f3c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b"


def parse(name: str, rng: random.Random | None = None) -> tuple[ClaudeParser, dict[str, Any], bool, str]:
    data = (HEADLESS / f"{name}.jsonl").read_bytes()
    parser = ClaudeParser()
    if rng is None:
        parser.feed(data)
    else:
        start = 0
        while start < len(data):
            size = rng.randint(1, 200)
            parser.feed(data[start : start + size])
            start += size
    outcome = parser.outcome(Exit(code=0))
    return parser, outcome.metrics, outcome.succeeded, outcome.reason


@pytest.mark.parametrize("seed", [None, 1, 2, 3])
def test_structured_result_and_the_session_pagent_chose(seed: int | None) -> None:
    parser, metrics, succeeded, reason = parse(
        "structured-needs-input", random.Random(seed) if seed else None
    )
    assert (succeeded, reason) == (True, "ok")  # the kind's verdict; the result's status is the engine's
    assert metrics["structured_output"] == {"status": "needs_input", "question": "SQLite or PostgreSQL?"}
    assert json.loads(metrics["result_text"]) == metrics["structured_output"]
    assert metrics["session_id"] == parser.session_id == SESSION  # --session-id was honoured
    assert metrics["model"] == "claude-opus-5-5"
    assert metrics["mcp_server_errors"] == []


def test_a_structured_result_after_real_work() -> None:
    _, metrics, succeeded, _ = parse("structured-done-after-write")
    assert succeeded
    assert metrics["structured_output"] == {"status": "done"}
    assert metrics["turns"] == 3


def test_a_run_without_schema_has_no_structured_output() -> None:
    data = (Path(__file__).parents[2] / "transcripts" / "success-write-tool.jsonl").read_bytes()
    parser = ClaudeParser()
    parser.feed(data)
    assert parser.outcome(Exit(code=0)).metrics["structured_output"] is None


@pytest.mark.parametrize("seed", [None, 7])
def test_the_fallback_model_answered(seed: int | None) -> None:
    """Three 529s for the main model, the CLI switches: a notice, and modelUsage names the fallback."""
    parser, metrics, succeeded, _ = parse("model-fallback", random.Random(seed) if seed else None)
    assert succeeded
    assert metrics["model"] == "claude-fallback-1"
    notices = parser.notices()
    assert "switched to the fallback model claude-fallback-1 (overloaded, from claude-main-1)" in notices
    assert metrics["api_retries"] == 2


def test_mcp_servers_that_did_not_start() -> None:
    parser, metrics, succeeded, _ = parse("mcp-servers-failed")
    assert succeeded  # the CLI goes on without them; mcp = "required" is the engine's verdict
    assert metrics["mcp_server_errors"] == [
        {"name": "missing", "status": "failed"},
        {"name": "dies", "status": "failed"},
    ]
    assert parser.notices() == ["MCP server missing: failed", "MCP server dies: failed"]


def test_answered_by_orders_the_models_by_output() -> None:
    usage = {
        "claude-main": {"outputTokens": 10},
        "claude-fallback": {"outputTokens": 300},
        "claude-haiku": {"outputTokens": 0},
    }
    assert answered_by(usage) == "claude-fallback, claude-main"
    assert answered_by({"only": {"outputTokens": 0}}) == "only"
    assert answered_by(None) is None
    assert answered_by({}) is None


def test_init_mcp_statuses_that_are_not_errors() -> None:
    parser = ClaudeParser()
    servers = [
        {"name": "ok", "status": "connected"},
        {"name": "later", "status": "pending"},
        {"name": "login", "status": "needs-auth"},
        {"name": "bad", "status": "failed", "error": "spawn ENOENT"},
        "junk",
    ]
    init = {"type": "system", "subtype": "init", "session_id": "s", "mcp_servers": servers}
    parser.feed(json.dumps(init).encode() + b"\n")
    assert parser.mcp_errors == [
        {"name": "login", "status": "needs-auth"},
        {"name": "bad", "status": "failed", "error": "spawn ENOENT"},
    ]


def test_a_session_the_cli_never_started_is_not_reported() -> None:
    """``--resume`` of an unknown session: 2.1.328 prints only a failed result ("No conversation
    found"), naming a session id all the same; no init event, so no session to resume later."""
    result = {
        "type": "result",
        "subtype": "error_during_execution",
        "is_error": True,
        "session_id": "2bf211fe-a295-4ac2-8c55-1a7edaebaa63",
        "errors": ["No conversation found with session ID: c2d54eed-393d-4b64-bead-2591ed73d9dd"],
    }
    parser = ClaudeParser()
    parser.feed(json.dumps(result).encode() + b"\n")
    outcome = parser.outcome(Exit(code=1))
    assert (outcome.succeeded, outcome.reason) == (False, "claude-error")
    assert outcome.metrics["session_id"] is None
