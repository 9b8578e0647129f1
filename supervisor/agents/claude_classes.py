"""The failure classes of a Claude Code attempt, from what its stream-json showed.

Evidence is read from structured fields first: the result's ``api_error_status``,
``api_error`` and ``terminal_reason``; the synthetic assistant message the CLI prints before a
failed result (``error``, ``api_error_status``, ``api_error_type``, ``api_error``); its
``system/api_retry`` events; its ``rate_limit_event``. Text is only a fallback, and only the
CLI's own error text (the result string and synthetic messages) is read, never the model's
words (a task about rate limiting must not look rate-limited).

Failure classes (README, "Running Claude Code overnight"), in the order they are tested:

=================  ==========================================================================
reason             recognised by
=================  ==========================================================================
``max-turns``      result subtype ``error_max_turns`` or ``terminal_reason`` "max_turns"
``budget``         a result subtype or ``terminal_reason`` naming a budget
``auth``           assistant ``error`` "authentication_failed", API error type
                   ``authentication_error``/``permission_error`` or status 401/403 (the CLI
                   retries a 401 like a 5xx first); without a status also the text ("Invalid
                   API key", "Not logged in", "please run /login", "OAuth token")
``billing``        assistant ``error`` "billing_error", or "credit balance"/"billing" in the text
``usage-limit``    ``api_error`` "usage_limit_reached", a ``rate_limit_event`` with status
                   "rejected", or the text ("You've hit your 5-hour limit", "weekly limit",
                   "usage limit reached"); ``resets_at`` (epoch seconds) and ``limit_type`` come
                   from the event, ``resets`` ("7:35pm (UTC)") from the text
``rate-limited``   status 429 or 529, assistant ``error`` "rate_limit"/"overloaded", API error
                   type ``rate_limit_error``/``overloaded_error`` (also from the last
                   ``api_retry``); without a status also "rate limit"/"overloaded" in the text
``api-error N``    any other failure with an HTTP status N (400, 500, ...)
``api-timeout``    no status, and the CLI says its request timed out or its stream went idle
``claude-error``   any other ``is_error`` result
``no-result``      the stream ended without a ``result`` event
``needs-input``    a successful result with ``permission_denials``: a person must widen the
                   allowed tools or answer in the prompt (never retried blindly)
=================  ==========================================================================
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from supervisor.agents.jsonlines import http_status as http_status_of
from supervisor.agents.jsonlines import number
from supervisor.reasons import Reason, api_error


class ClaudeParser(Protocol):
    """The evidence a Claude stream parser gathered (``supervisor.agents.claude.ClaudeParser``)."""

    result: dict[str, Any] | None
    assistant_errors: set[str]
    error_types: set[str]
    error_statuses: list[int]
    api_error: str | None
    error_texts: list[str]
    rate_limit: dict[str, Any] | None
    last_retry: dict[str, Any] | None
    progress_since_retry: bool


KEEP_TEXTS = 5  # the CLI's error texts kept for classification, each cut to 2000 characters
_USAGE_LIMIT = re.compile(
    r"hit your (?:[\w-]+ )?limit|usage limit reached|usage_limit_reached", re.IGNORECASE
)
_OLD_USAGE_LIMIT = re.compile(r"usage limit reached\|(\d{9,13})", re.IGNORECASE)  # CLI 1.x
_RESETS = re.compile(r"resets?\s+(?:at\s+)?([^\n.\"]{1,60})", re.IGNORECASE)
_AUTH_TEXT = re.compile(
    r"invalid api key|not logged in|please run /login|oauth token|authentication", re.IGNORECASE
)
_BILLING_TEXT = re.compile(r"credit balance|billing", re.IGNORECASE)
_RATE_TEXT = re.compile(r"rate.?limit|overloaded|\b429\b|\b529\b", re.IGNORECASE)
_TIMEOUT_TEXT = re.compile(r"timed out|stream idle|no bytes for", re.IGNORECASE)
_AUTH_TYPES = frozenset({"authentication_error", "permission_error"})
_RATE_TYPES = frozenset({"rate_limit_error", "overloaded_error"})
_RATE_ERRORS = frozenset({"rate_limit", "overloaded"})


def texts(stream: ClaudeParser) -> str:
    """The CLI's own error texts: the result string, synthetic messages, the result's errors."""
    result = stream.result or {}
    errors = result.get("errors")
    parts = [str(result.get("result") or ""), *stream.error_texts]
    if isinstance(errors, list):
        parts += [str(e) for e in errors[-KEEP_TEXTS:]]
    return "\n".join(p for p in parts if p)


def http_status(stream: ClaudeParser) -> int | None:
    """The HTTP status the failure ended with: the result's, a synthetic message's, or that of
    an API retry nothing answered after."""
    status = http_status_of((stream.result or {}).get("api_error_status"))
    if status is None and stream.error_statuses:
        status = stream.error_statuses[-1]
    if status is None and (retry := unanswered_retry(stream)) is not None:
        status = http_status_of(retry.get("error_status"))
    return status


def unanswered_retry(stream: ClaudeParser) -> dict[str, Any] | None:
    """The latest api_retry if no real turn followed it (it is then part of the failure)."""
    return None if stream.progress_since_retry else stream.last_retry


def retry_reason(retry: dict[str, Any]) -> str | None:
    """What an attempt stopped while the CLI waits out ``retry`` (an ``api_retry`` event) failed
    of: its HTTP status classified as a result's would be (429/529 or a rate-limit error:
    ``rate-limited``; 401/403: ``auth``; any other: ``api-error N``); ``None`` when the retry
    names no status (a dropped connection, a timeout)."""
    status = http_status_of(retry.get("error_status"))
    error = retry.get("error")
    if status in (429, 529) or error in _RATE_ERRORS:
        return Reason.RATE_LIMITED
    if status in (401, 403) or error == "authentication_failed":
        return Reason.AUTH
    return api_error(status) if status is not None else None


def usage_limited(stream: ClaudeParser) -> bool:
    """True if the CLI reported a usage (plan) limit, by field, event or text."""
    return (
        stream.api_error == "usage_limit_reached"
        or (stream.rate_limit or {}).get("status") == "rejected"
        or bool(_USAGE_LIMIT.search(texts(stream)))
    )


def failure_class(stream: ClaudeParser) -> str:  # noqa: PLR0911 - one return per class, in priority order
    """The failure class of a result that is not a success (module docstring, in order)."""
    result = stream.result or {}
    subtype = str(result.get("subtype") or "")
    terminal = str(result.get("terminal_reason") or "")
    text = texts(stream)
    status = http_status(stream)
    errors = set(stream.assistant_errors)
    types = set(stream.error_types)
    if (retry := unanswered_retry(stream)) is not None and isinstance(retry.get("error"), str):
        errors.add(retry["error"])
    if subtype == "error_max_turns" or terminal == "max_turns":
        return Reason.MAX_TURNS
    if "budget" in subtype or "budget" in terminal:
        return Reason.BUDGET
    if "authentication_failed" in errors or types & _AUTH_TYPES or status in (401, 403):
        return Reason.AUTH
    if "billing_error" in errors or _BILLING_TEXT.search(text):
        return Reason.BILLING
    if usage_limited(stream):
        return Reason.USAGE_LIMIT
    if status in (429, 529) or errors & _RATE_ERRORS or types & _RATE_TYPES:
        return Reason.RATE_LIMITED
    if status is not None:
        return api_error(status)
    if _AUTH_TEXT.search(text):
        return Reason.AUTH
    if _RATE_TEXT.search(text):
        return Reason.RATE_LIMITED
    if _TIMEOUT_TEXT.search(text):
        return Reason.API_TIMEOUT
    return Reason.CLAUDE_ERROR


def resets(stream: ClaudeParser) -> str | None:
    """The reset time a usage-limit message names ("7:35pm (UTC)"), if there is one."""
    if not usage_limited(stream):
        return None
    match = _RESETS.search(texts(stream))
    return match.group(1).strip() if match else None


def resets_at(stream: ClaudeParser) -> float | None:
    """When a usage limit resets, in epoch seconds, as the CLI reported it (never guessed)."""
    if (at := epoch((stream.rate_limit or {}).get("resetsAt"))) is not None:
        return at
    if match := _OLD_USAGE_LIMIT.search(texts(stream)):
        return epoch(int(match[1]))
    return None


def epoch(value: Any) -> float | None:
    """Epoch seconds from a number of seconds or (if implausibly large) milliseconds."""
    found = number(value)
    if found is None or found <= 0:
        return None
    return float(found) / 1000 if found > 1e11 else float(found)
