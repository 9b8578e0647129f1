"""The ``claude`` agent kind: reads Claude Code's ``--output-format stream-json`` output.

Tolerant by design: one JSON object per line is expected, but non-JSON lines, unknown event
types, unknown fields, over-long lines and a partial last line are all skipped (or, for a last
line without its newline, parsed at the end) without complaint; the raw stream stays in the
attempt's log unchanged. The outcome comes from the ``result`` event, never from the exit code
nor from its ``subtype``: Claude Code 2.1 ends every API failure with ``subtype: "success"`` and
``is_error: true``, exits 0 on some failures and hangs after others.

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

import json
import re
from datetime import datetime
from typing import Any

from supervisor.agents.base import Outcome
from supervisor.launch.seam import Exit
from supervisor.state.records import OK

AUTH = "auth"
BILLING = "billing"
USAGE_LIMIT = "usage-limit"
RATE_LIMITED = "rate-limited"
MAX_TURNS = "max-turns"
BUDGET = "budget"
NO_RESULT = "no-result"
NEEDS_INPUT = "needs-input"
API_TIMEOUT = "api-timeout"
CLAUDE_ERROR = "claude-error"

_MAX_LINE = 8 * 1024 * 1024  # a longer line cannot be an event we need; it is skipped
_KEEP_TEXTS = 5  # the CLI's error texts kept for classification, each cut to 2000 characters
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
_INPUT_TOKENS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
_AUTH_TYPES = frozenset({"authentication_error", "permission_error"})
_RATE_TYPES = frozenset({"rate_limit_error", "overloaded_error"})
_RATE_ERRORS = frozenset({"rate_limit", "overloaded"})


class ClaudeParser:
    """Follows one attempt's stream-json; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._partial = bytearray()
        self._skipping = False  # inside an over-long line, until its newline
        self.session_id: str | None = None
        self.model: str | None = None
        self.result: dict[str, Any] | None = None
        self.events = 0
        self.skipped_lines = 0  # non-JSON, non-object or over-long lines
        # Evidence for the failure class (bounded: a long session must not grow these).
        self.assistant_errors: set[str] = set()  # the `error` field of assistant messages
        self.error_types: set[str] = set()  # `api_error_type` of synthetic messages and the result
        self.error_statuses: list[int] = []  # `api_error_status` of synthetic messages, last 5
        self.api_error: str | None = None  # e.g. "usage_limit_reached"
        self.error_texts: list[str] = []  # the CLI's own error texts (synthetic messages)
        self.rate_limit: dict[str, Any] | None = None  # the latest rate_limit_info
        self.api_retries = 0
        self.last_retry: dict[str, Any] | None = None  # the latest api_retry event
        self._retrying = False  # the latest api_retry is still being waited out (live status)
        self._progress_since_retry = False  # a real turn happened after the latest api_retry
        self.denied: list[dict[str, Any]] = []  # system/permission_denied events, last 50
        self._notices: list[str] = []

    # -- reading ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout; complete lines are parsed, the rest waits for its newline.

        Memory stays bounded: a line longer than 8 MiB is dropped as it arrives, up to its
        newline, and the lines after it are parsed as usual.
        """
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                self._keep(data[start:])
                return
            if not self._partial and not self._skipping:
                self._line(data[start:end])  # the usual case: a whole line in one chunk
            else:
                self._keep(data[start:end])
                if not self._skipping:
                    self._line(bytes(self._partial))
                self._partial.clear()
                self._skipping = False
            start = end + 1

    def _keep(self, rest: bytes) -> None:
        if self._skipping or not rest:
            return
        if len(self._partial) + len(rest) > _MAX_LINE:
            self._partial.clear()
            self._skipping = True
            self.skipped_lines += 1
            return
        self._partial += rest

    def close(self) -> None:
        """The stream has ended: parse a last line that came without its newline."""
        if self._partial and not self._skipping:
            self._line(bytes(self._partial))
        self._partial.clear()
        self._skipping = False

    def _line(self, line: bytes) -> None:
        line = line.strip()
        if not line:
            return
        if not line.startswith(b"{") or len(line) > _MAX_LINE:
            self.skipped_lines += 1
            return
        try:
            event = json.loads(line)
        except ValueError:
            self.skipped_lines += 1
            return
        if isinstance(event, dict):
            self.events += 1
            self._event(event)
        else:
            self.skipped_lines += 1

    def _event(self, event: dict[str, Any]) -> None:
        kind, subtype = event.get("type"), event.get("subtype")
        if isinstance(event.get("session_id"), str) and self.session_id is None:
            self.session_id = event["session_id"]
        if kind == "system" and subtype == "init":
            if isinstance(event.get("session_id"), str):
                self.session_id = event["session_id"]
            self.model = event.get("model") if isinstance(event.get("model"), str) else None
        elif kind == "system" and subtype == "api_retry":
            self.api_retries += 1
            self.last_retry = event
            self._retrying = True
            self._progress_since_retry = False
            delay = _number(event.get("retry_delay_ms"))
            after = f" in {delay / 1000:.1f}s" if delay is not None else ""
            self._notices.append(f"{self.status}{after}")
        elif kind == "system" and subtype == "permission_denied":
            self.denied = [*self.denied[-49:], event]
            self._notices.append(f"tool call denied: {event.get('tool_name', '?')}")
        elif kind == "rate_limit_event":
            info = event.get("rate_limit_info")
            if isinstance(info, dict):
                self._rate_limit(info)
        elif kind == "assistant":
            self._assistant(event)
        elif kind == "user":
            self._retrying = False
            self._progress_since_retry = True
        elif kind == "result":
            self.result = event
            self._retrying = False
            if isinstance(event.get("api_error_type"), str):
                self.error_types.add(event["api_error_type"])
            if isinstance(event.get("api_error"), str):
                self.api_error = event["api_error"]

    def _assistant(self, event: dict[str, Any]) -> None:
        self._retrying = False
        message = event.get("message") if isinstance(event.get("message"), dict) else {}
        assert isinstance(message, dict)
        synthetic = (
            event.get("is_api_error_message") is True
            or message.get("model") == "<synthetic>"
            or isinstance(event.get("error"), str)
        )
        if not synthetic:
            self._progress_since_retry = True
            return
        if isinstance(event.get("error"), str):
            self.assistant_errors.add(event["error"])
        if isinstance(event.get("api_error_type"), str):
            self.error_types.add(event["api_error_type"])
        if (status := _status(event.get("api_error_status"))) is not None:
            self.error_statuses = [*self.error_statuses[-4:], status]
        if isinstance(event.get("api_error"), str):
            self.api_error = event["api_error"]
        params = event.get("api_error_params")
        if isinstance(params, dict) and isinstance(params.get("rate_limit_info"), dict):
            self._rate_limit(params["rate_limit_info"])
        content = message.get("content")
        if isinstance(content, list):
            for block in content:
                if isinstance(block, dict) and block.get("type") == "text":
                    self.error_texts.append(str(block.get("text", ""))[-2000:])
            del self.error_texts[:-_KEEP_TEXTS]

    def _rate_limit(self, info: dict[str, Any]) -> None:
        if info.get("status") == "rejected" and (self.rate_limit or {}).get("status") != "rejected":
            kind = info.get("rateLimitType")
            at = _epoch(info.get("resetsAt"))
            when = f", resets {datetime.fromtimestamp(at).astimezone():%Y-%m-%d %H:%M %Z}" if at else ""
            self._notices.append(f"usage limit reached ({kind or 'unknown limit'}){when}")
        self.rate_limit = info

    def notices(self) -> list[str]:
        """Events worth a log line since the last call: API retries ("retrying API, 529,
        attempt 2/10 in 1.1s"), denied tool calls, a usage limit."""
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
        if not self._retrying or self.last_retry is None:
            return None
        retry = self.last_retry
        what: object = _status(retry.get("error_status"))
        if what is None:  # a timeout or a dropped connection has no status
            what = retry.get("error") if isinstance(retry.get("error"), str) else "?"
        return f"retrying API, {what}, attempt {retry.get('attempt', '?')}/{retry.get('max_retries', '?')}"

    def outcome(self, exit: Exit) -> Outcome:
        """Judge the attempt from the result event (see the module docstring)."""
        self.close()
        metrics = self.metrics()
        if self.result is None:
            return Outcome(succeeded=False, reason=NO_RESULT, metrics=metrics)
        if self.result.get("is_error") is False and self.result.get("subtype", "success") == "success":
            if metrics["permission_denials"]:
                return Outcome(succeeded=False, reason=NEEDS_INPUT, metrics=metrics)
            return Outcome(succeeded=True, reason=OK, metrics=metrics)
        return Outcome(succeeded=False, reason=self.failure_class(), metrics=metrics)

    def _texts(self) -> str:
        result = self.result or {}
        errors = result.get("errors")
        parts = [str(result.get("result") or ""), *self.error_texts]
        if isinstance(errors, list):
            parts += [str(e) for e in errors[-_KEEP_TEXTS:]]
        return "\n".join(p for p in parts if p)

    def _http_status(self) -> int | None:
        """The HTTP status the failure ended with: the result's, a synthetic message's, or that of
        an API retry nothing answered after."""
        status = _status((self.result or {}).get("api_error_status"))
        if status is None and self.error_statuses:
            status = self.error_statuses[-1]
        if status is None and (retry := self._unanswered_retry()) is not None:
            status = _status(retry.get("error_status"))
        return status

    def _unanswered_retry(self) -> dict[str, Any] | None:
        """The latest api_retry if no real turn followed it (it is then part of the failure)."""
        return None if self._progress_since_retry else self.last_retry

    def usage_limited(self) -> bool:
        """True if the CLI reported a usage (plan) limit, by field, event or text."""
        return (
            self.api_error == "usage_limit_reached"
            or (self.rate_limit or {}).get("status") == "rejected"
            or bool(_USAGE_LIMIT.search(self._texts()))
        )

    def failure_class(self) -> str:  # noqa: PLR0911 - one return per class, in priority order
        """The failure class of a result that is not a success (module docstring, in order)."""
        result = self.result or {}
        subtype = str(result.get("subtype") or "")
        terminal = str(result.get("terminal_reason") or "")
        text = self._texts()
        status = self._http_status()
        errors = set(self.assistant_errors)
        types = set(self.error_types)
        if (retry := self._unanswered_retry()) is not None and isinstance(retry.get("error"), str):
            errors.add(retry["error"])
        if subtype == "error_max_turns" or terminal == "max_turns":
            return MAX_TURNS
        if "budget" in subtype or "budget" in terminal:
            return BUDGET
        if "authentication_failed" in errors or types & _AUTH_TYPES or status in (401, 403):
            return AUTH
        if "billing_error" in errors or _BILLING_TEXT.search(text):
            return BILLING
        if self.usage_limited():
            return USAGE_LIMIT
        if status in (429, 529) or errors & _RATE_ERRORS or types & _RATE_TYPES:
            return RATE_LIMITED
        if status is not None:
            return f"api-error {status}"
        if _AUTH_TEXT.search(text):
            return AUTH
        if _RATE_TEXT.search(text):
            return RATE_LIMITED
        if _TIMEOUT_TEXT.search(text):
            return API_TIMEOUT
        return CLAUDE_ERROR

    def resets(self) -> str | None:
        """The reset time a usage-limit message names ("7:35pm (UTC)"), if there is one."""
        if not self.usage_limited():
            return None
        match = _RESETS.search(self._texts())
        return match.group(1).strip() if match else None

    def resets_at(self) -> float | None:
        """When a usage limit resets, in epoch seconds, as the CLI reported it (never guessed)."""
        if (at := _epoch((self.rate_limit or {}).get("resetsAt"))) is not None:
            return at
        if match := _OLD_USAGE_LIMIT.search(self._texts()):
            return _epoch(int(match[1]))
        return None

    def metrics(self) -> dict[str, Any]:
        """What the attempt cost and did, as far as the stream says.

        ``tokens_in`` counts every input token the API processed: uncached, written to and read
        from the prompt cache (on a real run the uncached ones are a tiny part).
        """
        result = self.result or {}
        usage = result.get("usage") if isinstance(result.get("usage"), dict) else {}
        assert isinstance(usage, dict)
        inputs = [_number(usage.get(key)) for key in _INPUT_TOKENS]
        denials = result.get("permission_denials")
        # A successful run's text may mention limits; only a failure's resets matter.
        limited = result.get("is_error") is not False and self.usage_limited()
        return {
            "session_id": result.get("session_id") or self.session_id,
            "turns": _number(result.get("num_turns")),
            "cost_usd": _number(result.get("total_cost_usd")),
            "duration_ms": _number(result.get("duration_ms")),
            "api_ms": _number(result.get("duration_api_ms")),
            "tokens_in": None if all(n is None for n in inputs) else sum(n or 0 for n in inputs),
            "tokens_out": _number(usage.get("output_tokens")),
            "api_retries": self.api_retries,
            "permission_denials": denials if isinstance(denials, list) else [],
            "result_text": str(result.get("result") or "")[:2000] if result else None,
            "terminal_reason": result.get("terminal_reason") if result else None,
            "resets": self.resets() if limited else None,
            "resets_at": self.resets_at() if limited else None,
            "limit_type": (self.rate_limit or {}).get("rateLimitType") if limited else None,
        }


def _number(value: Any) -> Any:
    """``value`` if it is a real number (not a bool), else ``None``."""
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def _status(value: Any) -> int | None:
    """An HTTP status if ``value`` is one (an int 100-599), else ``None``."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599 else None


def _epoch(value: Any) -> float | None:
    """Epoch seconds from a number of seconds or (if implausibly large) milliseconds."""
    number = _number(value)
    if number is None or number <= 0:
        return None
    return float(number) / 1000 if number > 1e11 else float(number)
