"""The ``gemini`` agent kind's parser: reads ``gemini -p --output-format stream-json`` (Gemini CLI 0.61).

Gemini prints one JSON object per line: ``init {session_id, model}``, ``message {role, content,
delta}``, ``tool_use {tool_name, tool_id, parameters}``, ``tool_result {tool_id, status,
output, error {type, message}}``, ``error {severity, message}`` (a warning) and at the end
``result {status: success|error, error {type, message}, stats {input_tokens, output_tokens,
tool_calls, models}}``.  Its own API retries print nothing on stdout (stderr says "Attempt N
failed ..."), so a long retry looks like silence on stdout; `feed_stderr` turns those lines
into the live status.  Reading is tolerant
(`supervisor.agents.jsonlines`); the outcome comes from the ``result`` event, and from the exit
code only where there is none: Gemini exits with the HTTP status mod 256 on API errors (500 ->
244, 429 -> 173, 401 -> 145) and with its own codes otherwise (41 auth, 42 input, 44 sandbox,
52 config, 53 turn limit, 54 fatal tool error, 55 untrusted folder).

Bounded retries: with ``retries`` (the kind passes it) the parser gives up once stderr announces
more retries than that ("Attempt N failed with status S. Retrying with backoff..."): the attempt
counts as finished (the engine stops the CLI after ``kill_grace``) and fails with the class of
status S.  This bounds Gemini where pagent cannot write ``general.maxAttempts`` (the user's own
home); a ``result`` that still arrives takes precedence.

=================  ==========================================================================
reason             recognised by
=================  ==========================================================================
``auth``           status 401/403 in the result's error (``"code":401`` in "[API Error: ...]"),
                   "API key not valid", or, without a result, exit 41
``rate-limited``   status 429 (also from exit 173: the 429 text has no status), "Resource
                   exhausted" or "quota"
``api-error N``    any other status N (also from the exit code, without a result)
``api-timeout``    "fetch failed", "terminated" or another timeout: undici's headers (60 s) or
                   body (300 s) timeout on a silent server
``max-turns``      exit 53 without a result
``tool-failed``    a successful result after a tool call was refused: ``tool_result`` error
                   type ``tool_not_registered`` (no ``--yolo``/``auto_edit``), ``policy_violation``,
                   ``permission_denied``, ``path_not_in_workspace``,
                   ``sandbox_expansion_required``, ``no_space_left``; or exit 54
``agent-error``    any other error result (also exit 55, an untrusted folder: ``--skip-trust``)
``no-result``      no result event and an exit code that says nothing more
``ok``             ``result`` with ``status: success`` otherwise
=================  ==========================================================================
"""

from __future__ import annotations

import re
from typing import Any

from supervisor.agents.base import Outcome
from supervisor.agents.evidence import Event, TextTail, status_in_text
from supervisor.agents.jsonlines import JsonLines, http_status, number
from supervisor.reasons import Reason, api_error
from supervisor.seam import Exit

AUTH = Reason.AUTH
RATE_LIMITED = Reason.RATE_LIMITED
API_TIMEOUT = Reason.API_TIMEOUT
MAX_TURNS = Reason.MAX_TURNS
TOOL_FAILED = Reason.TOOL_FAILED
AGENT_ERROR = Reason.AGENT_ERROR
NO_RESULT = Reason.NO_RESULT

_REFUSED = frozenset(
    {
        "tool_not_registered",
        "policy_violation",
        "permission_denied",
        "path_not_in_workspace",
        "sandbox_expansion_required",
        "no_space_left",
    }
)
_EXIT_CLASSES = {
    41: AUTH,
    53: MAX_TURNS,
    54: TOOL_FAILED,
    55: AGENT_ERROR,
    42: AGENT_ERROR,
    44: AGENT_ERROR,
    52: AGENT_ERROR,
}
_AUTH_TEXT = re.compile(r"api key not valid|unauthenticated|permission_denied|authenticat", re.IGNORECASE)
_RATE_TEXT = re.compile(r"resource[ _]exhausted|rate.?limit|quota|too many requests", re.IGNORECASE)
_ATTEMPT = re.compile(
    r"Attempt (\d+) failed(?: with status (\d{3}))?(?:.*(Retrying with backoff))?", re.IGNORECASE
)
_TIMEOUT_TEXT = re.compile(r"fetch failed|terminated|timed? ?out|timeout", re.IGNORECASE)
_KEEP = 20


class GeminiParser:
    """Follows one attempt's stream-json output of the Gemini CLI; see the module docstring."""

    waiting = None  # the CLI announces no wait the stall clock should allow (``OutputParser``)

    def __init__(self, retries: int | None = None) -> None:
        """``retries``: give up after this many announced retries (None: never)."""
        self._lines = JsonLines(self._event)
        self._stderr = TextTail()
        self._retries = retries
        self.gave_up: tuple[int | None, str] | None = None  # (status, line) still being retried
        self.session_id: str | None = None
        self.model: str | None = None
        self.result: Event | None = None
        self.turns = 0  # model responses: runs of output between tool results
        self._between = True
        self._calls: dict[str, Event] = {}  # tool_use events by tool_id, the latest 50
        self.tool_failures: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._text: list[str] = []  # the assistant's latest message, in its deltas
        self.api_retries = 0
        self._retry: str | None = None
        self._notices: list[str] = []

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout."""
        self._lines.feed(data)

    def feed_stderr(self, data: bytes) -> None:
        """Take a chunk of stderr: "Attempt N failed with status S. Retrying with backoff..."
        becomes the live status and a notice; the tail is kept as evidence."""
        for line in self._stderr.feed(data):
            match = _ATTEMPT.search(line)
            if match is None:
                continue
            if match[3] and self.result is None:  # "... Retrying with backoff": it tries again
                self.api_retries += 1
                self._retry = f"retrying API, {match[2] or '?'}, attempt {match[1]} failed"
                self._notices.append(self._retry)
                if self._retries is not None and self.api_retries > self._retries and self.gave_up is None:
                    self.gave_up = (http_status(int(match[2])) if match[2] else None, line)
                    self._notices.append(
                        f"gemini retried the API {self.api_retries} times (pagent allows {self._retries}): "
                        "stopping it; pagent's retry policy decides"
                    )
            else:
                self._retry = None

    def notices(self) -> list[str]:
        """Refused tool calls and warnings since the last call."""
        taken, self._notices = self._notices, []
        return taken

    @property
    def finished(self) -> bool:
        """True once the ``result`` event has arrived, or the CLI went on retrying past the bound."""
        return self.result is not None or self.gave_up is not None

    @property
    def status(self) -> str | None:
        """ "retrying API, 500, attempt 3 failed" while the CLI retries (known from stderr only)."""
        return self._retry

    # -- reading ---------------------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        kind = event.get("type")
        self._retry = None  # any event: the CLI got past its retry
        if kind == "init":
            if isinstance(event.get("session_id"), str):
                self.session_id = event["session_id"]
            if isinstance(event.get("model"), str):
                self.model = event["model"]
        elif kind == "message" and event.get("role") == "assistant":
            self._output()
            if not event.get("delta"):
                self._text.clear()
            self._text = [*self._text[-199:], str(event.get("content") or "")]
        elif kind == "tool_use":
            self._output()
            self._text.clear()
            tool_id = str(event.get("tool_id"))
            self._calls = {**dict(list(self._calls.items())[-49:]), tool_id: event}
        elif kind == "tool_result":
            self._between = True
            self._tool_result(event)
        elif kind == "error":
            text = str(event.get("message") or "")[:500]
            self.warnings = [*self.warnings[-(_KEEP - 1) :], text]
            self._notices.append(f"gemini {event.get('severity') or 'error'}: {text}")
        elif kind == "result":
            self.result = event

    def _output(self) -> None:
        if self._between:
            self.turns += 1
            self._between = False

    def _tool_result(self, event: Event) -> None:
        error = event.get("error") if isinstance(event.get("error"), dict) else {}
        assert isinstance(error, dict)
        if event.get("status") != "error" or error.get("type") not in _REFUSED:
            return
        call = self._calls.get(str(event.get("tool_id")), {})
        failure = {
            "tool_name": call.get("tool_name", "?"),
            "tool_input": call.get("parameters"),
            "error": str(error.get("message") or error.get("type"))[:500],
            "error_type": error.get("type"),
        }
        self.tool_failures = [*self.tool_failures[-(_KEEP - 1) :], failure]
        self._notices.append(f"tool call refused: {failure['tool_name']}: {failure['error'][:200]}")

    # -- judging ---------------------------------------------------------------------------------

    def outcome(self, exit: Exit) -> Outcome:
        """Judge the attempt from the result event, or the exit code without one."""
        self._lines.close()
        self._stderr.close()
        metrics = self.metrics()
        if self.result is None and self.gave_up is not None:
            return Outcome(succeeded=False, reason=_from_status(*self.gave_up), metrics=metrics)
        if self.result is None:
            return Outcome(succeeded=False, reason=_from_exit(exit), metrics=metrics)
        if self.result.get("status") == "success":
            if self.tool_failures:
                return Outcome(succeeded=False, reason=TOOL_FAILED, metrics=metrics)
            return Outcome(succeeded=True, reason=Reason.OK, metrics=metrics)
        return Outcome(succeeded=False, reason=self.failure_class(exit), metrics=metrics)

    def error_text(self) -> str:
        """The result's error message (its type when it has none)."""
        error = (self.result or {}).get("error")
        if not isinstance(error, dict):
            return ""
        return str(error.get("message") or error.get("type") or "")[-2000:]

    def failure_class(self, exit: Exit | None = None) -> str:
        """The class of an error result (module docstring, in order)."""
        text = self.error_text()
        status = status_in_text(text)
        if status is None and exit is not None and exit.code is not None:
            status = _status_from_exit(exit.code)
        if status in (401, 403) or (status is None and _AUTH_TEXT.search(text)):
            return AUTH
        if status == 429 or (status is None and _RATE_TEXT.search(text)):
            return RATE_LIMITED
        if status is not None:
            return api_error(status)
        if _TIMEOUT_TEXT.search(text):
            return API_TIMEOUT
        return AGENT_ERROR

    def metrics(self) -> dict[str, Any]:
        """What the attempt cost and did (Gemini reports tokens, not cost)."""
        result = self.result or {}
        stats = result.get("stats") if isinstance(result.get("stats"), dict) else {}
        assert isinstance(stats, dict)
        text = "".join(self._text)
        return {
            "session_id": self.session_id,
            "model": self.model,
            "turns": self.turns or None,
            "cost_usd": None,
            "tokens_in": number(stats.get("input_tokens")),
            "tokens_out": number(stats.get("output_tokens")),
            "cached_tokens": number(stats.get("cached")),
            "tool_calls": number(stats.get("tool_calls")),
            "api_retries": self.api_retries,
            "duration_ms": number(stats.get("duration_ms")),
            "result_text": text[-2000:] if result else None,
            "error_text": self.error_text()
            or (self._stderr.text()[-2000:] if result.get("status") != "success" else "")
            or None,
            "gave_up": self.gave_up is not None and not result,
            "permission_denials": [],
            "tool_failures": list(self.tool_failures),
            "warnings": list(self.warnings),
        }


def _status_from_exit(code: int) -> int | None:
    """The HTTP status an exit code stands for: Gemini exits with 400-511 mod 256 (144-255)."""
    return http_status(code + 256) if 144 <= code <= 255 else None


def _from_status(status: int | None, line: str) -> str:
    """The reason for a failure Gemini was still retrying: from its status, else its text."""
    if status in (401, 403) or (status is None and _AUTH_TEXT.search(line)):
        return AUTH
    if status == 429 or (status is None and _RATE_TEXT.search(line)):
        return RATE_LIMITED
    return api_error(status) if status is not None else Reason.API_ERROR.value


def _from_exit(exit: Exit) -> str:
    """The reason for a run that printed no result: from Gemini's exit code, if it says one."""
    if exit.code is None:
        return NO_RESULT
    if exit.code in _EXIT_CLASSES:
        return _EXIT_CLASSES[exit.code]
    status = _status_from_exit(exit.code)
    if status in (401, 403):
        return AUTH
    if status == 429:
        return RATE_LIMITED
    return api_error(status) if status is not None else NO_RESULT
