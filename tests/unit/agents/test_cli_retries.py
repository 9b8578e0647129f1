"""The parsers' bound on a CLI's own API retries, fed the lines the real CLIs print.

Past the bound a parser reports the attempt finished (the engine then stops the CLI after
``kill_grace``) and fails it with the class of the error being retried; a final event the CLI
still prints takes precedence. The lines are those of the pinned CLIs (Codex 0.169's stdout,
Gemini 0.61's stderr, opencode 1.18's stderr with ``OPENCODE_PRINT_LOGS=1``), as recorded in
``tests/transcripts/`` and measured for issue 15.
"""

from __future__ import annotations

import json

from supervisor.agents.codex import CodexParser
from supervisor.agents.gemini import GeminiParser
from supervisor.agents.opencode import OpencodeParser
from supervisor.seam import Exit

HIGH_DEMAND = "We\u2019re currently experiencing high demand, which may cause temporary errors."
KILLED = Exit(signal=15)


def line(event: dict[str, object]) -> bytes:
    return (json.dumps(event) + "\n").encode()


def reconnect(n: int, why: str) -> bytes:
    return line({"type": "error", "message": f"Reconnecting... {n}/5 ({why})"})


def test_codex_gives_up_past_its_reconnect_bound() -> None:
    parser = CodexParser(reconnects=1)
    parser.feed(line({"type": "thread.started", "thread_id": "t-1"}) + line({"type": "turn.started"}))
    parser.feed(reconnect(1, HIGH_DEMAND))
    assert not parser.finished
    assert parser.status == f"retrying API, attempt 1/5 ({HIGH_DEMAND})"
    parser.feed(reconnect(2, HIGH_DEMAND))
    assert parser.finished
    assert any("allows 1" in notice for notice in parser.notices())
    outcome = parser.outcome(KILLED)
    assert (outcome.succeeded, outcome.reason) == (False, "api-error 500")
    assert outcome.metrics["gave_up"] is True
    assert outcome.metrics["session_id"] == "t-1"


def test_codex_bound_classes_the_retried_error() -> None:
    for why, reason in (
        ("exceeded retry limit, last status: 429 Too Many Requests", "rate-limited"),
        ("unexpected status 401 Unauthorized: bad key, url: http://127.0.0.1:1/v1/responses", "auth"),
    ):
        parser = CodexParser(reconnects=0)
        parser.feed(reconnect(1, why))
        assert parser.finished
        assert parser.outcome(KILLED).reason == reason


def test_codex_turn_failed_after_the_bound_wins() -> None:
    parser = CodexParser(reconnects=0)
    parser.feed(reconnect(1, HIGH_DEMAND))
    parser.feed(line({"type": "turn.failed", "error": {"message": "unexpected status 401 Unauthorized: no"}}))
    outcome = parser.outcome(Exit(code=1))
    assert outcome.reason == "auth"
    assert outcome.metrics["gave_up"] is False


def test_codex_without_a_bound_never_gives_up() -> None:
    parser = CodexParser()
    for n in range(1, 6):
        parser.feed(reconnect(n, HIGH_DEMAND))
    assert not parser.finished
    assert parser.outcome(KILLED).reason == "no-result"


GEMINI_500 = (
    b'Attempt %d failed with status 500. Retrying with backoff... _ApiError: {"error":{"code":500}}\n'
)


def test_gemini_gives_up_past_its_retry_bound_from_stderr() -> None:
    parser = GeminiParser(retries=2)
    parser.feed(line({"type": "init", "session_id": "s-1", "model": "m"}))
    for attempt in (1, 2):
        parser.feed_stderr(GEMINI_500 % attempt)
        assert not parser.finished
    assert parser.status == "retrying API, 500, attempt 2 failed"
    parser.feed_stderr(GEMINI_500 % 3)
    assert parser.finished
    outcome = parser.outcome(KILLED)
    assert (outcome.reason, outcome.metrics["api_retries"], outcome.metrics["gave_up"]) == (
        "api-error 500",
        3,
        True,
    )


def test_gemini_with_its_own_max_attempts_ends_by_itself() -> None:
    """maxAttempts = 3 in pagent's settings: the third failure says "Max attempts reached", no
    retry follows, and the result event decides (exit 244 = 500 mod 256)."""
    parser = GeminiParser(retries=2)
    for attempt in (1, 2):
        parser.feed_stderr(GEMINI_500 % attempt)
    parser.feed_stderr(b'Attempt 3 failed: {"error":{"code":500}}. Max attempts reached\n')
    assert not parser.finished
    error = {"type": "unknown", "message": '[API Error: {"error":{"code":500,"message":"boom"}}]'}
    parser.feed(line({"type": "result", "status": "error", "error": error}))
    assert parser.finished
    assert parser.outcome(Exit(code=244)).reason == "api-error 500"


def test_gemini_429_bound() -> None:
    parser = GeminiParser(retries=0)
    parser.feed_stderr(b"Attempt 1 failed with status 429. Retrying with backoff... slow\n")
    assert parser.outcome(KILLED).reason == "rate-limited"


def stream_error(message: str, small: bool = False) -> bytes:
    return (
        'timestamp=2026-12-01T22:38:01.922Z level=ERROR run=3af09829 message="stream error" '
        f"providerID=fake modelID=fake-model session.id=ses_x small={str(small).lower()} agent=build "
        f'mode=primary error.error="AI_APICallError: {message}"\n'
    ).encode()


def test_opencode_gives_up_at_its_third_failed_try() -> None:
    parser = OpencodeParser(retries=2)
    parser.feed_stderr(stream_error("boom", small=True))  # the title model's: not counted
    for _ in range(2):
        parser.feed_stderr(stream_error("boom"))
    assert not parser.finished
    parser.feed_stderr(stream_error("boom"))
    assert parser.finished
    outcome = parser.outcome(KILLED)
    # opencode names no status before its last try: the class, without one.
    assert (outcome.reason, outcome.metrics["api_retries"], outcome.metrics["error_text"]) == (
        "api-error",
        3,
        "AI_APICallError: boom",
    )


def test_opencode_classes_a_retried_error_by_its_words() -> None:
    for message, reason in (
        ("Rate limit reached for requests", "rate-limited"),
        ("Incorrect API key provided", "auth"),
        ("Provider response headers timed out after 3000ms", "api-timeout"),
    ):
        parser = OpencodeParser(retries=0)
        parser.feed_stderr(stream_error(message))
        assert parser.outcome(KILLED).reason == reason, message


def step(kind: str, **part: object) -> bytes:
    return line({"type": kind, "sessionID": "ses_1", "part": {"type": kind.replace("_", "-"), **part}})


def test_opencode_counts_steps_that_restart_unfinished_as_failed_tries() -> None:
    """A chunk or header timeout shows only as another step_start of the same step."""
    parser = OpencodeParser(retries=2)
    for _ in range(3):
        parser.feed(step("step_start"))
    assert not parser.finished  # two restarts: two failed tries
    parser.feed(step("step_start"))
    assert parser.finished
    assert parser.outcome(KILLED).reason == "api-timeout"


def test_opencode_progress_resets_the_count_and_its_error_event_wins() -> None:
    parser = OpencodeParser(retries=1)
    parser.feed_stderr(stream_error("boom"))
    parser.feed(
        step("step_start") + step("step_finish", reason="tool-calls", tokens={"input": 1, "output": 1})
    )
    parser.feed_stderr(stream_error("boom"))
    assert not parser.finished  # one failure since the last progress
    parser.feed_stderr(stream_error("boom"))
    assert parser.finished
    error = {"name": "APIError", "data": {"message": "bad key", "statusCode": 401}}
    parser.feed(line({"type": "error", "sessionID": "ses_1", "error": error}))
    assert parser.outcome(Exit(code=1)).reason == "auth"
