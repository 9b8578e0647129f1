"""The stream-json parser on every recorded transcript of the real CLI, on constructed streams, and
the retry policy of each failure class."""

from __future__ import annotations

import calendar
import json
import random
import tracemalloc
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from supervisor.agents.claude import ClaudeParser
from supervisor.agents.resets import reset_in, seconds_until_reset
from supervisor.engine import policy
from supervisor.plan.model import TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import Exit

TRANSCRIPTS = Path(__file__).parents[2] / "transcripts"
EXIT_0, EXIT_1 = Exit(code=0), Exit(code=1)
# The usage-limit transcript's reset: "resets 7:35pm (UTC)", rate_limit_event resetsAt.
USAGE_RESET = 1795462504


@dataclass(frozen=True)
class Expected:
    """What the parser must make of one recorded transcript."""

    reason: str
    turns: int
    cost_usd: float
    tokens_in: int
    tokens_out: int
    api_retries: int
    notices: tuple[str, ...] = ()
    statuses: tuple[str, ...] = ()  # live statuses seen while feeding, in order


EXPECTED = {
    "success-write-tool": Expected(Reason.OK, 2, 0.0016, 200, 40, 0),
    "retry-then-success": Expected(
        Reason.OK,
        2,
        0.0016,
        200,
        40,
        1,
        ("retrying API, 500, attempt 1/2 in 0.6s",),
        ("retrying API, 500, attempt 1/2",),
    ),
    "max-turns": Expected(Reason.MAX_TURNS, 2, 0.0008, 100, 20, 0),
    "permission-denial": Expected(Reason.NEEDS_INPUT, 2, 0.0016, 200, 40, 0, ("tool call denied: Bash",)),
    "is-error-400": Expected("api-error 400", 1, 0, 0, 0, 0),
    "api-retry-storm-then-error": Expected(
        "api-error 500",
        1,
        0,
        0,
        0,
        3,
        (
            "retrying API, 500, attempt 1/3 in 0.6s",
            "retrying API, 500, attempt 2/3 in 1.2s",
            "retrying API, 500, attempt 3/3 in 2.4s",
        ),
        (
            "retrying API, 500, attempt 1/3",
            "retrying API, 500, attempt 2/3",
            "retrying API, 500, attempt 3/3",
        ),
    ),
    "overloaded-529": Expected(
        Reason.RATE_LIMITED,
        1,
        0,
        0,
        0,
        2,
        ("retrying API, 529, attempt 1/5 in 0.6s", "retrying API, 529, attempt 2/5 in 1.1s"),
        ("retrying API, 529, attempt 1/5", "retrying API, 529, attempt 2/5"),
    ),
    "rate-limit-429": Expected(
        Reason.RATE_LIMITED,
        1,
        0,
        0,
        0,
        2,
        ("retrying API, 429, attempt 1/2 in 0.6s", "retrying API, 429, attempt 2/2 in 1.2s"),
        ("retrying API, 429, attempt 1/2", "retrying API, 429, attempt 2/2"),
    ),
    "usage-limit-429": Expected(
        Reason.USAGE_LIMIT,
        1,
        0,
        0,
        0,
        0,
        (
            "usage limit reached (five_hour), resets "
            + datetime.fromtimestamp(USAGE_RESET).astimezone().strftime("%Y-%m-%d %H:%M %Z"),
        ),
    ),
    "auth-invalid-key-401": Expected(
        Reason.AUTH,
        1,
        0,
        0,
        0,
        2,
        ("retrying API, 401, attempt 1/2 in 0.5s", "retrying API, 401, attempt 2/2 in 1.0s"),
        ("retrying API, 401, attempt 1/2", "retrying API, 401, attempt 2/2"),
    ),
    "auth-no-credentials": Expected(Reason.AUTH, 1, 0, 0, 0, 0),
    "silent-api-timeout": Expected(
        Reason.API_TIMEOUT,
        1,
        0,
        0,
        0,
        1,
        ("retrying API, unknown, attempt 1/1 in 0.5s",),
        ("retrying API, unknown, attempt 1/1",),
    ),
    "stall-byte-watchdog": Expected(Reason.API_TIMEOUT, 1, 0.00042, 100, 1, 0),
}


def _transcript(name: str) -> bytes:
    return (TRANSCRIPTS / f"{name}.jsonl").read_bytes()


def _events(data: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def _parse(*chunks: bytes, exit: Exit = EXIT_0) -> tuple[ClaudeParser, Any]:
    parser = ClaudeParser()
    for chunk in chunks:
        parser.feed(chunk)
    return parser, parser.outcome(exit)


def _chunks(data: bytes, rng: random.Random, most: int = 300) -> list[bytes]:
    """``data`` cut at random places into pieces of 1 to ``most`` bytes."""
    pieces, start = [], 0
    while start < len(data):
        size = rng.randint(1, most)
        pieces.append(data[start : start + size])
        start += size
    return pieces


def _line(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode() + b"\n"


def _result(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "type": "result",
        "subtype": "success",
        "is_error": False,
        "result": "Done.",
        "num_turns": 1,
        "session_id": "s-1",
        "total_cost_usd": 0.01,
        "usage": {"input_tokens": 10, "output_tokens": 5},
        "permission_denials": [],
    }
    return {**base, **fields}


def _synthetic(text: str, error: str, **fields: Any) -> dict[str, Any]:
    """The assistant message the CLI prints before a failed result."""
    message = {"model": "<synthetic>", "role": "assistant", "content": [{"type": "text", "text": text}]}
    return {"type": "assistant", "message": message, "error": error, "is_api_error_message": True, **fields}


def _assistant_text(text: str) -> dict[str, Any]:
    """A real model message."""
    message = {"model": "claude-opus-5-5", "role": "assistant", "content": [{"type": "text", "text": text}]}
    return {"type": "assistant", "message": message, "session_id": "s-1"}


INIT = {"type": "system", "subtype": "init", "session_id": "s-1", "model": "claude-opus-5-5"}


# -- the recorded transcripts -------------------------------------------------------------------


def test_every_transcript_has_an_expectation() -> None:
    """A newly recorded transcript cannot slip past these tests unjudged."""
    assert {path.stem for path in TRANSCRIPTS.glob("*.jsonl")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_transcript_outcome_and_metrics(name: str) -> None:
    """Each real transcript gets its failure class, session, turns, cost, tokens and retries."""
    data = _transcript(name)
    want = EXPECTED[name]
    meta = json.loads((TRANSCRIPTS / f"{name}.meta.json").read_text())
    parser, outcome = _parse(data, exit=Exit(code=meta["exit_code"]))
    events = _events(data)
    assert outcome.reason == want.reason
    assert outcome.succeeded is (want.reason == Reason.OK)
    metrics = outcome.metrics
    assert metrics["session_id"] == events[0]["session_id"] == events[-1]["session_id"]
    assert parser.session_id == events[0]["session_id"]
    assert metrics["turns"] == want.turns
    assert metrics["cost_usd"] == pytest.approx(want.cost_usd)
    assert metrics["tokens_in"] == want.tokens_in
    assert metrics["tokens_out"] == want.tokens_out
    assert metrics["api_retries"] == want.api_retries
    assert metrics["duration_ms"] == events[-1]["duration_ms"]
    assert metrics["result_text"] == (events[-1].get("result") or "")
    assert parser.notices() == list(want.notices)
    assert parser.notices() == []  # taken once
    assert parser.finished
    assert parser.status is None  # never after the result
    assert parser.events == len(events)
    assert parser.skipped_lines == 0


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("seed", range(5))
def test_transcript_in_random_chunks_parses_the_same(name: str, seed: int) -> None:
    """Lines split anywhere across chunks (1 to 300 bytes) give exactly the same judgement."""
    data = _transcript(name)
    _, whole = _parse(data)
    parser, chunked = _parse(*_chunks(data, random.Random(seed)))
    assert (chunked.succeeded, chunked.reason) == (whole.succeeded, whole.reason)
    assert chunked.metrics == whole.metrics
    assert parser.notices() == list(EXPECTED[name].notices)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_live_status_follows_the_api_retries(name: str) -> None:
    """``status`` says "retrying API, 500, attempt 2/3" between a retry and the next answer only."""
    parser = ClaudeParser()
    seen: list[str] = []
    for line in _transcript(name).splitlines(keepends=True):
        parser.feed(line)
        if parser.status is not None and (not seen or seen[-1] != parser.status):
            seen.append(parser.status)
    assert seen == list(EXPECTED[name].statuses)
    assert parser.status is None


def test_status_clears_once_the_api_answers() -> None:
    """After a retry that worked, the live status no longer claims the CLI is retrying."""
    parser = ClaudeParser()
    lines = _transcript("retry-then-success").splitlines(keepends=True)
    parser.feed(b"".join(lines[:2]))  # init, api_retry
    assert parser.status == "retrying API, 500, attempt 1/2"
    parser.feed(lines[2])  # the model's Write call
    assert parser.status is None
    assert not parser.finished


def test_usage_limit_transcript_records_the_reset() -> None:
    """The reset comes as epoch seconds from the rate_limit_event and as text from the message."""
    _, outcome = _parse(_transcript("usage-limit-429"))
    assert outcome.metrics["resets_at"] == USAGE_RESET
    assert outcome.metrics["resets"] == "7:35pm (UTC)"
    assert outcome.metrics["limit_type"] == "five_hour"
    assert reset_in(outcome.metrics, USAGE_RESET - 600.0) == 600.0


def test_permission_denials_are_kept_with_tool_and_input() -> None:
    """The denied call's tool name and input reach the metrics, for status and report."""
    parser, outcome = _parse(_transcript("permission-denial"))
    (denial,) = outcome.metrics["permission_denials"]
    assert denial["tool_name"] == "Bash"
    assert denial["tool_input"]["command"] == "touch made-by-bash.txt"
    assert [event["tool_name"] for event in parser.denied] == ["Bash"]


@pytest.mark.parametrize("name", ["success-write-tool", "retry-then-success", "permission-denial"])
def test_successful_runs_record_no_reset(name: str) -> None:
    """Reset fields are only filled for a failed, usage-limited attempt."""
    _, outcome = _parse(_transcript(name))
    assert outcome.metrics["resets"] is None
    assert outcome.metrics["resets_at"] is None
    assert outcome.metrics["terminal_reason"] == "completed"


# -- constructed streams ------------------------------------------------------------------------


def test_unknown_events_and_fields_are_ignored() -> None:
    """New event types, subtypes and fields from a later CLI do not disturb the judgement."""
    _, outcome = _parse(
        _line({**INIT, "brand_new_field": {"x": [1, 2]}}),
        _line({"type": "telemetry", "payload": 1}),
        _line({"type": "system", "subtype": "compact_boundary", "whatever": True}),
        _line({"type": "stream_event", "event": {"type": "content_block_delta"}}),
        _line({"no_type": 1}),
        _line(_result(new_top_level="x", usage={"input_tokens": 3, "output_tokens": 4, "new": {}})),
    )
    assert (outcome.succeeded, outcome.reason) == (True, Reason.OK)
    assert outcome.metrics["tokens_in"] == 3
    assert outcome.metrics["session_id"] == "s-1"


def test_garbage_lines_are_skipped() -> None:
    """Non-JSON, non-object JSON, invalid UTF-8 and truncated objects are skipped, not fatal."""
    parser, outcome = _parse(
        b"Warning: something the CLI printed\n",
        _line(INIT),
        b"\n\r\n   \n",
        b'[1, 2, 3]\n42\nnull\n"text"\n',
        b'{"type": "assistant", "message": \n',
        b"\xff\xfe{\x00\x81 not utf-8\n",
        b'{"type": "result", \xff}\n',
        _line(_result()),
    )
    assert (outcome.succeeded, outcome.reason) == (True, Reason.OK)
    assert parser.events == 2
    assert parser.skipped_lines == 8


def test_wrong_field_types_are_tolerated() -> None:
    """Fields of unexpected types are treated as absent."""
    _, outcome = _parse(
        _line({"type": "system", "subtype": "init", "session_id": 7, "model": ["x"]}),
        _line({"type": "system", "subtype": "api_retry", "attempt": "one", "error_status": "500"}),
        _line({"type": "assistant", "message": "not a dict", "error": 3}),
        _line({"type": "rate_limit_event", "rate_limit_info": "rejected"}),
        _line(
            _result(
                is_error=True,
                num_turns="2",
                total_cost_usd=True,
                usage=[1],
                permission_denials={"a": 1},
                result=None,
            )
        ),
    )
    assert outcome.succeeded is False
    assert outcome.reason == Reason.CLAUDE_ERROR
    metrics = outcome.metrics
    assert (metrics["turns"], metrics["cost_usd"], metrics["tokens_in"]) == (None, None, None)
    assert metrics["permission_denials"] == []


def test_partial_last_line_without_newline_is_parsed_at_the_end() -> None:
    """A result printed without its final newline still counts once the stream has ended."""
    parser = ClaudeParser()
    parser.feed(_line(INIT))
    parser.feed(_line(_result())[:-1])
    assert not parser.finished  # it may still grow
    outcome = parser.outcome(EXIT_0)
    assert (outcome.succeeded, outcome.reason) == (True, Reason.OK)
    assert parser.finished


def test_truncated_last_line_is_no_result() -> None:
    """A result cut off half-way (the CLI was killed while printing) is no result."""
    _, outcome = _parse(_line(INIT), _line(_result())[:40])
    assert (outcome.succeeded, outcome.reason) == (False, Reason.NO_RESULT)
    assert outcome.metrics["session_id"] == "s-1"


def test_over_long_line_in_pieces_is_dropped_with_bounded_memory() -> None:
    """A 24 MiB line arriving in 64 KiB chunks is skipped holding at most 8 MiB; what follows parses."""
    piece = b"x" * 65536
    parser = ClaudeParser()
    parser.feed(_line(INIT) + b'{"type": "assistant", "junk": "')
    tracemalloc.start()
    try:
        for _ in range(24 * 16):
            parser.feed(piece)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 9 * 2**20
    parser.feed(b'"}\n' + _line(_result()))
    outcome = parser.outcome(EXIT_0)
    assert (outcome.succeeded, outcome.reason) == (True, Reason.OK)
    assert parser.skipped_lines == 1
    assert parser.events == 2


def test_over_long_line_in_one_chunk_is_skipped() -> None:
    """A single chunk holding a 9 MiB line and then more lines: only the long line is lost."""
    long_event = b'{"type": "user", "x": "' + b"y" * (9 * 2**20) + b'"}\n'
    parser, outcome = _parse(_line(INIT) + long_event + _line(_result()))
    assert (outcome.succeeded, outcome.reason) == (True, Reason.OK)
    assert parser.skipped_lines == 1


def test_line_just_under_the_limit_is_parsed() -> None:
    """A long but legal line (7 MiB of assistant text) is still an event."""
    text = "z" * (7 * 2**20)
    parser, outcome = _parse(
        _line(INIT), *_chunks(_line(_assistant_text(text)), random.Random(1), most=2**20), _line(_result())
    )
    assert outcome.succeeded
    assert parser.events == 3


def test_exit_0_with_is_error_fails() -> None:
    """The exit code does not matter: is_error true is a failure even with exit 0."""
    _, outcome = _parse(
        _line(INIT), _line(_result(is_error=True, result="API Error: 400 x", api_error_status=400))
    )
    assert (outcome.succeeded, outcome.reason) == (False, "api-error 400")


def test_exit_1_with_a_clean_result_succeeds() -> None:
    """And a clean result is a success even if the CLI then exits non-zero."""
    _, outcome = _parse(_line(INIT), _line(_result()), exit=EXIT_1)
    assert (outcome.succeeded, outcome.reason) == (True, Reason.OK)


def test_no_result_with_exit_0_fails() -> None:
    """A stream that ends without a result is ``no-result``, whatever the exit code."""
    parser, outcome = _parse(_line(INIT), _line(_assistant_text("working on it")))
    assert (outcome.succeeded, outcome.reason) == (False, Reason.NO_RESULT)
    assert outcome.metrics["session_id"] == "s-1"
    assert outcome.metrics["turns"] is None
    assert outcome.metrics["result_text"] is None
    assert not parser.finished


def test_empty_stream_is_no_result() -> None:
    """Nothing at all on stdout (the CLI crashed at start) is ``no-result``."""
    _, outcome = _parse()
    assert (outcome.succeeded, outcome.reason) == (False, Reason.NO_RESULT)
    assert outcome.metrics["session_id"] is None


def test_result_then_nothing_is_finished() -> None:
    """Once the result is in, ``finished`` is true (the runner then allows kill_grace to exit)."""
    parser = ClaudeParser()
    parser.feed(_line(INIT))
    assert not parser.finished
    parser.feed(_line(_result()))
    assert parser.finished
    assert parser.status is None


def test_success_subtype_must_also_say_success() -> None:
    """is_error false with an error subtype (a budget stop) is not a success."""
    _, outcome = _parse(_line(_result(subtype="error_max_budget_usd", is_error=False)))
    assert (outcome.succeeded, outcome.reason) == (False, Reason.BUDGET)


def test_max_turns_from_terminal_reason() -> None:
    """``terminal_reason: max_turns`` alone is enough for the class."""
    _, outcome = _parse(
        _line(_result(subtype="error_during_execution", is_error=True, terminal_reason="max_turns"))
    )
    assert outcome.reason == Reason.MAX_TURNS


@pytest.mark.parametrize(
    ("text", "resets"),
    [
        ("You've hit your 5-hour limit · resets 7:35pm (UTC)", "7:35pm (UTC)"),
        ("You've hit your weekly limit · resets Nov 25, 12:25am (UTC)", "Nov 25, 12:25am (UTC)"),
        ("You've hit your limit · resets 3pm (Europe/Paris)", "3pm (Europe/Paris)"),
        ("Claude usage limit reached. Your limit will reset at 5pm", "5pm"),
    ],
)
def test_usage_limit_from_text_alone(text: str, resets: str) -> None:
    """Without the event or the field, the CLI's words still name the class and the reset."""
    _, outcome = _parse(_line(_synthetic(text, "rate_limit")), _line(_result(is_error=True, result=text)))
    assert outcome.reason == Reason.USAGE_LIMIT
    assert outcome.metrics["resets"] == resets
    assert outcome.metrics["resets_at"] is None


def test_usage_limit_from_the_api_error_field() -> None:
    """``api_error: usage_limit_reached`` on the result is enough, whatever the text."""
    _, outcome = _parse(
        _line(_result(is_error=True, result="Request rejected", api_error="usage_limit_reached"))
    )
    assert outcome.reason == Reason.USAGE_LIMIT


def test_usage_limit_from_a_rejected_rate_limit_event() -> None:
    """A rejected rate_limit_event makes a 429 failure a usage limit and gives its reset."""
    info = {"status": "rejected", "resetsAt": USAGE_RESET * 1000, "rateLimitType": "seven_day"}
    _, outcome = _parse(
        _line({"type": "rate_limit_event", "rate_limit_info": info}),
        _line(_result(is_error=True, result="API Error: 429", api_error_status=429)),
    )
    assert outcome.reason == Reason.USAGE_LIMIT
    assert outcome.metrics["resets_at"] == USAGE_RESET  # milliseconds understood
    assert outcome.metrics["limit_type"] == "seven_day"


def test_allowed_rate_limit_event_is_not_a_limit() -> None:
    """Subscription runs print ``status: allowed`` events; a later 429 is a plain rate limit."""
    info = {"status": "allowed", "resetsAt": USAGE_RESET, "rateLimitType": "five_hour"}
    parser, outcome = _parse(
        _line({"type": "rate_limit_event", "rate_limit_info": info}),
        _line(_result(is_error=True, result="API Error: Request rejected (429)", api_error_status=429)),
    )
    assert outcome.reason == Reason.RATE_LIMITED
    assert outcome.metrics["resets_at"] is None
    assert parser.notices() == []


def test_old_cli_usage_limit_with_epoch() -> None:
    """CLI 1.x said "Claude AI usage limit reached|<epoch>": the epoch is the reset."""
    text = f"Claude AI usage limit reached|{USAGE_RESET}"
    _, outcome = _parse(_line(_result(is_error=True, result=text)))
    assert outcome.reason == Reason.USAGE_LIMIT
    assert outcome.metrics["resets_at"] == USAGE_RESET


@pytest.mark.parametrize(
    ("events", "reason"),
    [
        ([_synthetic("Invalid API key · Fix external API key", "authentication_failed")], Reason.AUTH),
        ([_synthetic("x", "unknown", api_error_type="authentication_error")], Reason.AUTH),
        ([_synthetic("OAuth token has expired", "unknown")], Reason.AUTH),
        ([_synthetic("Forbidden", "unknown", api_error_status=403)], Reason.AUTH),
        ([_synthetic("Credit balance is too low", "billing_error")], Reason.BILLING),
        ([_synthetic("Your credit balance is too low", "unknown", api_error_status=400)], Reason.BILLING),
        (
            [_synthetic("API Error: 529 Overloaded", "server_error", api_error_status=529)],
            Reason.RATE_LIMITED,
        ),
        ([_synthetic("API Error", "rate_limit")], Reason.RATE_LIMITED),
        ([_synthetic("API Error", "unknown", api_error_type="overloaded_error")], Reason.RATE_LIMITED),
        ([_synthetic("API Error: Repeated 529 Overloaded errors", "unknown")], Reason.RATE_LIMITED),
        (
            [_synthetic("API Error: 500 Internal server error", "server_error", api_error_status=500)],
            "api-error 500",
        ),
        ([_synthetic("Request timed out.", "server_error")], Reason.API_TIMEOUT),
        ([_synthetic("API Error: stream idle: no bytes for 10000ms", "unknown")], Reason.API_TIMEOUT),
        ([_synthetic("Something odd", "unknown")], Reason.CLAUDE_ERROR),
        (
            [
                {
                    "type": "system",
                    "subtype": "api_retry",
                    "attempt": 2,
                    "max_retries": 2,
                    "error_status": 401,
                },
                _synthetic("x", "unknown"),
            ],
            Reason.AUTH,
        ),
        (
            [
                {
                    "type": "system",
                    "subtype": "api_retry",
                    "attempt": 1,
                    "error_status": 429,
                    "error": "rate_limit",
                },
                _synthetic("x", "unknown"),
            ],
            Reason.RATE_LIMITED,
        ),
    ],
)
def test_failure_classes_from_structured_fields_and_cli_text(
    events: list[dict[str, Any]], reason: str
) -> None:
    """Each class is recognised from the synthetic message's fields, its text or the last retry."""
    text = next((e["message"]["content"][0]["text"] for e in events if e["type"] == "assistant"), "error")
    _, outcome = _parse(*[_line(e) for e in events], _line(_result(is_error=True, result=text)))
    assert outcome.reason == reason


def test_the_models_own_words_do_not_classify() -> None:
    """A task about rate limiting that then hits a 500 is an api error, not rate-limited."""
    _, outcome = _parse(
        _line(INIT),
        _line(
            _assistant_text("I will add a rate limit and handle 429 Overloaded errors; you've hit your limit")
        ),
        _line(_synthetic("API Error: 500 Internal server error", "server_error", api_error_status=500)),
        _line(_result(is_error=True, result="API Error: 500 Internal server error", api_error_status=500)),
    )
    assert outcome.reason == "api-error 500"


def test_a_retry_that_worked_does_not_explain_a_later_failure() -> None:
    """A 429 retried successfully early on does not make a later unrelated failure rate-limited."""
    _, outcome = _parse(
        _line(
            {
                "type": "system",
                "subtype": "api_retry",
                "attempt": 1,
                "error_status": 429,
                "error": "rate_limit",
            }
        ),
        _line(_assistant_text("working")),
        _line({"type": "user", "message": {"content": []}}),
        _line(_synthetic("Something odd", "unknown")),
        _line(_result(is_error=True, result="Something odd", num_turns=3)),
    )
    assert outcome.reason == Reason.CLAUDE_ERROR


def test_notices_report_denials_and_the_usage_limit_once() -> None:
    """A denied call and a rejected limit each give one log line; repeats of the event do not."""
    info = {"status": "rejected", "resetsAt": USAGE_RESET, "rateLimitType": "five_hour"}
    parser, _ = _parse(
        _line({"type": "system", "subtype": "permission_denied", "tool_name": "Bash", "message": "no"}),
        _line({"type": "rate_limit_event", "rate_limit_info": info}),
        _line({"type": "rate_limit_event", "rate_limit_info": info}),
    )
    notices = parser.notices()
    assert notices[0] == "tool call denied: Bash"
    assert notices[1].startswith("usage limit reached (five_hour), resets ")
    assert len(notices) == 2


def test_tokens_in_counts_cache_reads_and_writes() -> None:
    """tokens_in is every input token processed: uncached, cache writes and cache reads."""
    usage = {
        "input_tokens": 12,
        "cache_creation_input_tokens": 300,
        "cache_read_input_tokens": 5000,
        "output_tokens": 7,
    }
    _, outcome = _parse(_line(_result(usage=usage)))
    assert outcome.metrics["tokens_in"] == 5312
    assert outcome.metrics["tokens_out"] == 7


# -- reset times --------------------------------------------------------------------------------

NOW = calendar.timegm((2026, 11, 23, 18, 35, 4))  # Monday 23 Nov 2026, 18:35:04 UTC


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("7:35pm (UTC)", 3596.0),
        ("7:35 p.m. (UTC)", 3596.0),
        ("12am (UTC)", 5 * 3600 + 24 * 60 + 56.0),
        ("Nov 25, 12:25am (UTC)", 29 * 3600 + 49 * 60 + 56.0),
        ("Jan 2, 1am (UTC)", (39 * 24 + 6) * 3600 + 24 * 60 + 56.0),  # next year
        ("Nov 23, 6:00pm (UTC)", 0.0),  # just past: now, not next year
        ("3pm (Europe/Paris)", 19 * 3600 + 24 * 60 + 56.0),  # 14:00 UTC tomorrow
        ("in 2h 30m", 9000.0),
        ("in 45 minutes", 2700.0),
        ("3", None),  # a bare number is no time
        ("13pm (UTC)", None),
        ("Feb 30, 1am (UTC)", None),
        ("soon", None),
    ],
)
def test_seconds_until_reset(text: str, seconds: float | None) -> None:
    """Times of day, dates, zones and relative times as the CLI writes them."""
    assert seconds_until_reset(text, NOW) == seconds


def test_reset_in_prefers_the_epoch() -> None:
    """``resets_at`` wins over the text; the text is the fallback; a past reset is now."""
    assert reset_in({"resets_at": NOW + 100, "resets": "7:35pm (UTC)"}, NOW) == 100
    assert reset_in({"resets_at": None, "resets": "7:35pm (UTC)"}, NOW) == 3596.0
    assert reset_in({"resets_at": NOW - 50}, NOW) == 0.0
    assert reset_in({"resets": "whenever"}, NOW) is None
    assert reset_in({}, NOW) is None


# -- the retry policy of each class -------------------------------------------------------------

SETTINGS = TaskSettings(
    retries=2, retry_delay=10.0, rate_limit_delay=60.0, rate_limit_retries=3, max_wait=3600.0
)


def _decide(reason: str, failures: int = 1, rate_limited: int = 0, **kw: Any) -> policy.Decision:
    settings = replace(SETTINGS, **kw.pop("settings", {}))
    return policy.decide(
        reason,
        failures=failures,
        rate_limited=rate_limited,
        settings=settings,
        rng=random.Random(3),
        **kw,
    )


@pytest.mark.parametrize("reason", [Reason.AUTH, Reason.BILLING])
def test_auth_and_billing_stop_the_kind(reason: str) -> None:
    """No retry, and no further task of the agent kind starts."""
    assert _decide(reason) == policy.Decision(retry=False, stop_kind=True)


def test_usage_limit_within_max_wait_waits_for_the_reset() -> None:
    """A reset within max_wait: retry after it (plus a minute or so), not counted."""
    decision = _decide(Reason.USAGE_LIMIT, reset_in=600.0)
    assert decision.retry
    assert not decision.counted
    assert not decision.stop_kind
    assert 660.0 <= decision.delay <= 675.0


@pytest.mark.parametrize("wait", [7200.0, None])
def test_usage_limit_beyond_max_wait_or_unknown_stops_the_kind(wait: float | None) -> None:
    """A reset too far away, or none named, stops every Claude task."""
    assert _decide(Reason.USAGE_LIMIT, reset_in=wait) == policy.Decision(retry=False, stop_kind=True)


def test_rate_limited_is_not_counted_up_to_the_cap_then_counted() -> None:
    """Rate limits wait longer and longer without using retries; past the cap they count."""
    delays = []
    for n in range(1, 4):
        decision = _decide(Reason.RATE_LIMITED, failures=1, rate_limited=n)
        assert (decision.retry, decision.counted) == (True, False)
        delays.append(decision.delay)
    assert [60 <= delays[0] <= 75, 120 <= delays[1] <= 150, 240 <= delays[2] <= 300] == [True] * 3
    past_cap = _decide(Reason.RATE_LIMITED, failures=1, rate_limited=4)
    assert (past_cap.retry, past_cap.counted) == (True, True)
    assert 10 <= past_cap.delay <= 12.5
    assert _decide(Reason.RATE_LIMITED, failures=3, rate_limited=5).retry is False


@pytest.mark.parametrize("reason", [Reason.MAX_TURNS, Reason.BUDGET, Reason.NEEDS_INPUT])
def test_final_classes_are_retried_only_on_request(reason: str) -> None:
    """max-turns, budget, needs-input: not retried, unless the task lists them in retry_on."""
    assert _decide(reason) == policy.Decision(retry=False)
    decision = _decide(reason, settings={"retry_on": (reason,)})
    assert (decision.retry, decision.counted) == (True, True)


@pytest.mark.parametrize(
    "reason", ["api-error 500", "api-error 400", Reason.API_TIMEOUT, Reason.CLAUDE_ERROR, Reason.NO_RESULT]
)
def test_other_failures_use_the_ordinary_retries(reason: str) -> None:
    """Everything else is retried ``retries`` times with backoff, then given up."""
    assert _decide(reason, failures=1).retry
    second = _decide(reason, failures=2)
    assert second.retry
    assert 20 <= second.delay <= 25
    assert not _decide(reason, failures=3).retry


@pytest.mark.parametrize("reason", [Reason.OK, Reason.INTERRUPTED])
def test_ok_and_interrupted_are_never_retried(reason: str) -> None:
    """Neither a success nor an interrupt is retried."""
    assert _decide(reason) == policy.Decision(retry=False)


# -- through the runner (scripted launcher, fake clock) -----------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _usage_limited_stream(now: float, resets_at: float) -> bytes:
    """A real usage-limit transcript whose event says ``resets_at`` while the text names
    7:35pm UTC, three hours after ``now``."""
    info = {"status": "rejected", "resetsAt": int(resets_at), "rateLimitType": "five_hour"}
    text = "You've hit your 5-hour limit · resets 7:35pm (UTC)"
    assert seconds_until_reset("7:35pm (UTC)", now) == pytest.approx(3 * 3600, abs=60)
    return b"".join(
        [
            _line(INIT),
            _line({"type": "rate_limit_event", "rate_limit_info": info}),
            _line(_synthetic(text, "rate_limit", api_error_status=429, api_error="usage_limit_reached")),
            _line(_result(is_error=True, result=text, api_error_status=429, api_error="usage_limit_reached")),
        ]
    )


@pytest.mark.anyio
async def test_runner_waits_for_the_reset_the_cli_reported(tmp_path: Path) -> None:
    """The usage-limit wait comes from the event's exact reset (20 min), not the text (3 h)."""
    from supervisor.engine.runner import Runner
    from supervisor.engine.runs import new_run
    from supervisor.engine.taskrun import RunContext
    from supervisor.state.layout import Layout
    from supervisor.state.store import Store
    from supervisor.ui.compose import KINDS, load_plan
    from supervisor.workspace.git import RepoInfo
    from tests.fakes import FakeClock, FakeExecutor, Play

    plan_path = tmp_path / "plan.toml"
    plan_path.write_text(
        '[agents.cc]\ncommand = ["claude"]\nkind = "claude"\npreflight = false\n'
        '[defaults]\nagent = "cc"\nisolation = "none"\nretries = 0\nmax_wait = "1h"\n'
        '[[waves]]\n[[waves.tasks]]\nid = "t"\nprompt = "x"\n'
    )
    plan = load_plan(plan_path)
    clock = FakeClock()
    clock.now = calendar.timegm((2026, 11, 23, 16, 35, 0))
    limited = Play(code=1, output=[_usage_limited_stream(clock.now, clock.now + 1200)])
    done = Play(code=0, output=[_line(INIT), _line(_result())])
    executor = FakeExecutor({"t": [limited, done]})
    store = Store(tmp_path / "state.db")
    repo = RepoInfo(root=tmp_path, base_ref="HEAD", base_commit="0" * 40)
    state = new_run(plan, store, repo, clock.time())
    context = RunContext(plan, Layout.of(plan), repo.root, repo.base_commit)
    runner = Runner(context, state, executor, KINDS, clock=clock, rng=random.Random(7))
    await runner.execute()
    (record,) = store.tasks(state.run_id)
    store.close()
    assert (record.state.value, record.attempts) == ("succeeded", 2)
    assert any(1200 <= slept <= 1300 for slept in clock.slept)
