"""The waits the Claude CLI announces (``system/api_retry`` with ``retry_delay_ms``), as the parser
exposes them to the watchdog: on recorded transcripts of the real CLI and on constructed events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from supervisor.agents.claude import ClaudeParser
from supervisor.reasons import Reason

TRANSCRIPTS = Path(__file__).resolve().parents[2] / "transcripts"
WITH_RETRIES = {
    "rate-limit-429": Reason.RATE_LIMITED,
    "overloaded-529": Reason.RATE_LIMITED,
    "api-retry-storm-then-error": "api-error 500",
    "retry-then-success": "api-error 500",
    "auth-invalid-key-401": Reason.AUTH,
    "silent-api-timeout": None,  # a timeout has no status: the stall stays a stall
}


@pytest.mark.parametrize("name", sorted(WITH_RETRIES))
def test_every_api_retry_announces_its_delay_until_the_next_event(name: str) -> None:
    """After each ``api_retry`` line the parser says how long the CLI will wait and why; after
    any other line it says nothing; each retry is a new announcement."""
    parser = ClaudeParser()
    seen = []
    for line in (TRANSCRIPTS / f"{name}.jsonl").read_bytes().splitlines(keepends=True):
        parser.feed(line)
        event = json.loads(line)
        if event.get("subtype") == "api_retry":
            waiting = parser.waiting
            assert waiting is not None
            assert waiting.seconds == event["retry_delay_ms"] / 1000
            assert waiting.reason == WITH_RETRIES[name]
            assert all(waiting is not earlier for earlier in seen)
            seen.append(waiting)
        else:
            assert parser.waiting is None
    assert seen


def _retry(**fields: Any) -> bytes:
    event = {"type": "system", "subtype": "api_retry", "attempt": 1, "max_retries": 10, **fields}
    return json.dumps(event).encode() + b"\n"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"error_status": 429, "error": "rate_limit", "retry_delay_ms": 30_000}, Reason.RATE_LIMITED),
        ({"error_status": 529, "retry_delay_ms": 1100}, Reason.RATE_LIMITED),
        ({"error": "overloaded", "retry_delay_ms": 500}, Reason.RATE_LIMITED),
        ({"error_status": 503, "retry_delay_ms": 500}, "api-error 503"),
        ({"error_status": 403, "retry_delay_ms": 500}, Reason.AUTH),
        ({"error": "unknown", "retry_delay_ms": 500}, None),
    ],
)
def test_the_reason_of_a_wait_is_the_retrys_error_class(fields: dict[str, Any], reason: str | None) -> None:
    parser = ClaudeParser()
    parser.feed(_retry(**fields))
    assert parser.waiting is not None
    assert parser.waiting.reason == reason


def test_a_retry_without_a_delay_or_with_a_bad_one_allows_no_silence() -> None:
    for fields in ({}, {"retry_delay_ms": "soon"}, {"retry_delay_ms": -5}):
        parser = ClaudeParser()
        parser.feed(_retry(error_status=429, **fields))
        assert parser.waiting is not None
        assert parser.waiting.seconds == 0.0
