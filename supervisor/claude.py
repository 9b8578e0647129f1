"""The ``claude`` agent kind: reads Claude Code's ``--output-format stream-json`` output.

Tolerant by design: one JSON object per line is expected, but non-JSON lines, unknown event
types, unknown fields and a partial last line are all skipped without complaint (the raw
stream stays in the attempt's log unchanged). The outcome comes from the ``result`` event,
never from the exit code: the CLI exits 0 on some failures and hangs after others.

Failure classes (README, "Running Claude Code overnight"):

=================  ==========================================================================
reason             recognised by
=================  ==========================================================================
``auth``           assistant ``error`` "authentication_failed", API status 401/403, or the
                   result text ("Invalid API key", "Not logged in", "OAuth token")
``billing``        assistant ``error`` "billing_error", or "credit balance" in the result text
``usage-limit``    "hit your limit" / "usage limit" in the result or assistant text; the
                   reset time ("resets 3pm", "resets 15:00") is kept in ``resets``
``rate-limited``   API status 429 or 529, assistant ``error`` "rate_limit"/"overloaded", or
                   "rate limit" / "overloaded" in the result text
``max-turns``      result subtype ``error_max_turns``
``budget``         result subtype ``error_max_budget_usd`` (or any subtype naming a budget)
``api-error N``    any other ``is_error`` result with ``api_error_status`` N
``claude-error``   any other ``is_error`` result
``no-result``      the stream ended without a ``result`` event
``needs-input``    a successful result with ``permission_denials``: a person must widen the
                   allowed tools or answer in the prompt (never retried blindly)
=================  ==========================================================================
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from supervisor.agents import Outcome
from supervisor.launcher import Exit
from supervisor.model import OK

AUTH = "auth"
BILLING = "billing"
USAGE_LIMIT = "usage-limit"
RATE_LIMITED = "rate-limited"
MAX_TURNS = "max-turns"
BUDGET = "budget"
NO_RESULT = "no-result"
NEEDS_INPUT = "needs-input"
CLAUDE_ERROR = "claude-error"

_MAX_LINE = 8 * 1024 * 1024  # a longer line cannot be an event we need; it is skipped
_USAGE_LIMIT = re.compile(r"hit your (?:usage )?limit|usage limit reached", re.IGNORECASE)
_RESETS = re.compile(r"resets?\s+(?:at\s+)?([^\n.\"]{1,60})", re.IGNORECASE)
_RESET_TIME = re.compile(r"\b(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>am|pm)?\b", re.IGNORECASE)
_RESET_ZONE = re.compile(r"\(([A-Za-z_]+(?:/[A-Za-z_+-]+)+|UTC)\)")
_AUTH_TEXT = re.compile(r"invalid api key|not logged in|oauth token|please run /login|authentication", re.I)
_BILLING_TEXT = re.compile(r"credit balance|billing", re.IGNORECASE)
_RATE_TEXT = re.compile(r"rate.?limit|overloaded|\b429\b|\b529\b", re.IGNORECASE)


class ClaudeParser:
    """Follows one attempt's stream-json; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._partial = bytearray()
        self._skipping = False  # inside an over-long line, until its newline
        self.session_id: str | None = None
        self.model: str | None = None
        self.result: dict[str, Any] | None = None
        self.assistant_errors: list[str] = []
        self.assistant_texts: list[str] = []
        self.api_retries = 0
        self.last_retry: dict[str, Any] | None = None
        self.events = 0
        self._notices: list[str] = []

    # -- reading ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout; complete lines are parsed, the rest waits for its newline."""
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return
            if self._skipping:
                self._skipping = False
            elif self._partial:
                self._partial += data[start:end]
                self._line(bytes(self._partial))
                self._partial.clear()
            else:
                self._line(data[start:end])
            start = end + 1

    def _keep(self, rest: bytes) -> None:
        if self._skipping or not rest:
            return
        if len(self._partial) + len(rest) > _MAX_LINE:
            self._partial.clear()
            self._skipping = True
            return
        self._partial += rest

    def _line(self, line: bytes) -> None:
        line = line.strip()
        if not line.startswith(b"{") or len(line) > _MAX_LINE:
            return
        try:
            event = json.loads(line)
        except ValueError:
            return
        if isinstance(event, dict):
            self.events += 1
            self._event(event)

    def _event(self, event: dict[str, Any]) -> None:
        kind, subtype = event.get("type"), event.get("subtype")
        if isinstance(event.get("session_id"), str) and self.session_id is None:
            self.session_id = event["session_id"]
        if kind == "system" and subtype == "init":
            self.session_id = event.get("session_id") or self.session_id
            self.model = event.get("model") if isinstance(event.get("model"), str) else None
        elif kind == "system" and subtype == "api_retry":
            self.api_retries += 1
            self.last_retry = event
            if self.status:
                self._notices.append(self.status)
        elif kind == "assistant":
            if isinstance(event.get("error"), str):
                self.assistant_errors.append(event["error"])
            message = event.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), list):
                for block in message["content"]:
                    if isinstance(block, dict) and block.get("type") == "text":
                        self.assistant_texts.append(str(block.get("text", ""))[-2000:])
                del self.assistant_texts[:-5]
        elif kind == "result":
            self.result = event

    def notices(self) -> list[str]:
        """API retries seen since the last call, as "retrying API, 529, attempt 2/10"."""
        taken, self._notices = self._notices, []
        return taken

    # -- judging ---------------------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """True once the ``result`` event has arrived."""
        return self.result is not None

    @property
    def status(self) -> str | None:
        """ "retrying API, 529, attempt 3/10" while the CLI retries the API, else ``None``."""
        if self.result is not None or self.last_retry is None:
            return None
        retry = self.last_retry
        return (
            f"retrying API, {retry.get('error_status', '?')}, "
            f"attempt {retry.get('attempt', '?')}/{retry.get('max_retries', '?')}"
        )

    def outcome(self, exit: Exit) -> Outcome:
        """Judge the attempt from the result event (see the module docstring)."""
        metrics = self.metrics()
        if self.result is None:
            return Outcome(succeeded=False, reason=NO_RESULT, metrics=metrics)
        if self.result.get("is_error") is False and self.result.get("subtype", "success") == "success":
            if metrics["permission_denials"]:
                return Outcome(succeeded=False, reason=NEEDS_INPUT, metrics=metrics)
            return Outcome(succeeded=True, reason=OK, metrics=metrics)
        return Outcome(succeeded=False, reason=self.failure_class(), metrics=metrics)

    def failure_class(self) -> str:  # noqa: PLR0911 - one return per class, in priority order
        """The failure class of a result that is not a success."""
        result = self.result or {}
        subtype = str(result.get("subtype", ""))
        text = " ".join([str(result.get("result", "")), *self.assistant_texts])
        status = result.get("api_error_status")
        errors = set(self.assistant_errors)
        if self.last_retry is not None and status is None:
            status = self.last_retry.get("error_status")
        if subtype == "error_max_turns":
            return MAX_TURNS
        if "budget" in subtype:
            return BUDGET
        if "authentication_failed" in errors or status in (401, 403) or _AUTH_TEXT.search(text):
            return AUTH
        if "billing_error" in errors or _BILLING_TEXT.search(text):
            return BILLING
        if _USAGE_LIMIT.search(text):
            return USAGE_LIMIT
        if status in (429, 529) or errors & {"rate_limit", "overloaded"} or _RATE_TEXT.search(text):
            return RATE_LIMITED
        if isinstance(status, int):
            return f"api-error {status}"
        return CLAUDE_ERROR

    def resets(self) -> str | None:
        """The reset time a usage-limit message names ("3pm (Europe/Paris)"), if any."""
        text = " ".join([str((self.result or {}).get("result", "")), *self.assistant_texts])
        match = _RESETS.search(text)
        return match.group(1).strip() if match else None

    def metrics(self) -> dict[str, Any]:
        """What the attempt cost and did, as far as the stream says."""
        result = self.result or {}
        usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        assert isinstance(usage, dict)
        denials = result.get("permission_denials")
        return {
            "session_id": result.get("session_id") or self.session_id,
            "turns": _number(result.get("num_turns")),
            "cost_usd": _number(result.get("total_cost_usd")),
            "duration_ms": _number(result.get("duration_ms")),
            "api_ms": _number(result.get("duration_api_ms")),
            "tokens_in": _number(usage.get("input_tokens")),
            "tokens_out": _number(usage.get("output_tokens")),
            "api_retries": self.api_retries,
            "permission_denials": denials if isinstance(denials, list) else [],
            "result_text": str(result.get("result", ""))[:2000] if result else None,
            "resets": self.resets(),
        }


def seconds_until_reset(resets: str, now: float) -> float | None:
    """Seconds from ``now`` until the time of day a usage-limit message names, or ``None``.

    Understands "3pm", "3:30 pm", "15:00", each optionally followed by "(Area/City)"; without a
    zone the machine's local time is meant. The next such moment after ``now`` is taken.
    """
    match = _RESET_TIME.search(resets)
    if match is None:
        return None
    hour, minute = int(match["h"]), int(match["m"] or 0)
    if match["ampm"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["ampm"].lower() == "pm" else 0)
    if hour > 23 or minute > 59:
        return None
    zone: tzinfo | None = None
    if tz_match := _RESET_ZONE.search(resets):
        try:
            zone = ZoneInfo(tz_match[1])
        except (ValueError, ZoneInfoNotFoundError):
            zone = None
    current = datetime.fromtimestamp(now, zone) if zone else datetime.fromtimestamp(now).astimezone()
    target = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= current:
        target += timedelta(days=1)
    return (target - current).total_seconds()


def _number(value: Any) -> Any:
    """``value`` if it is a real number (not a bool), else ``None``."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None
