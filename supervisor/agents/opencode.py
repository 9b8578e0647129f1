"""The ``opencode`` agent kind's parser: reads ``opencode run --format json`` (opencode 1.18).

opencode prints one JSON object per line, each with ``sessionID`` (the session, ``ses_...``) and
a ``part``: ``step_start``, ``text {part.text}``, ``reasoning``, ``tool_use {part.tool,
part.state.status: completed|error, part.state.error}``, ``step_finish {part.reason, part.tokens
{input, output, reasoning, cache {read, write}}, part.cost}`` (one per model call), or one
``error {error {name, data {message, statusCode, isRetryable, responseBody}}}``.  There is no
summary event: a run succeeded when its last ``step_finish`` has reason ``stop`` and no error
followed.  Its own retries (5, from 2 s doubling to 30 s, about 75 s for a constant 500; no
setting bounds them) print nothing on stdout.  Reading is tolerant
(`supervisor.agents.jsonlines`); the exit code is not used (opencode exits 0 after an
auto-rejected permission, 1 after an error).

Bounded retries: opencode's retry count is built in (``RETRY_MAX_RETRIES = 5`` in 1.18, no
setting), so with ``retries`` (the kind passes it) the parser gives up once opencode has failed
more tries in a row than that and is about to try again: a failed try is a ``stream error`` line
on stderr (``--print-logs --log-level ERROR``, i.e. ``OPENCODE_PRINT_LOGS=1`` and
``OPENCODE_LOG_LEVEL=ERROR``, which the kind sets; the line names no status, only the error's
message), or a ``step_start`` that begins while the previous step never finished (a timed-out
try: ``headerTimeout``/``chunkTimeout``).  The attempt then counts as finished (the engine stops
the CLI after ``kill_grace``) and fails as ``rate-limited`` or ``auth`` by the message's words,
``api-timeout`` for timed-out tries, else ``api-error`` (without a status: opencode does not say
it before its last try).  An ``error`` event that still arrives takes precedence.

=================  ==========================================================================
reason             recognised by
=================  ==========================================================================
``auth``           error ``statusCode`` 401/403, or ``name`` ``ProviderAuthError``
``rate-limited``   ``statusCode`` 429, or "rate limit"/"too many requests" without a status
``api-error N``    any other ``statusCode`` N
``api-timeout``    a timeout (``headerTimeout``/``chunkTimeout``, "timed out")
``agent-error``    any other error, or a last ``step_finish`` whose reason is not ``stop``
``no-result``      no ``step_finish`` and no error
``needs-input``    a permission was rejected ("The user rejected permission ...": ``"ask"`` is
                   auto-rejected in ``run``, and the run then ends after that step, exit 0)
``tool-failed``    the model called a tool opencode does not offer (``"deny"`` removes the
                   tool): a ``tool_use`` of the tool ``invalid`` ("Model tried to call
                   unavailable tool 'write'"), after which the run goes on and exits 0
``ok``             otherwise
=================  ==========================================================================
"""

from __future__ import annotations

import re
from typing import Any

from supervisor.agents.base import Outcome
from supervisor.agents.evidence import Event, TextTail, add_numbers, status_in_text
from supervisor.agents.jsonlines import JsonLines, http_status
from supervisor.reasons import Reason, api_error
from supervisor.seam import Exit

AUTH = Reason.AUTH
RATE_LIMITED = Reason.RATE_LIMITED
API_TIMEOUT = Reason.API_TIMEOUT
AGENT_ERROR = Reason.AGENT_ERROR
NO_RESULT = Reason.NO_RESULT
NEEDS_INPUT = Reason.NEEDS_INPUT
TOOL_FAILED = Reason.TOOL_FAILED

_REJECTED = re.compile(r"rejected permission|permission (?:was )?denied|not allowed to", re.IGNORECASE)
_RATE_TEXT = re.compile(r"rate.?limit|too many requests", re.IGNORECASE)
_TIMEOUT_TEXT = re.compile(r"timed out|timeout", re.IGNORECASE)
_AUTH_TEXT = re.compile(r"api key|unauthori[sz]ed|authenticat|forbidden", re.IGNORECASE)
_STREAM_ERROR = re.compile(r'message="stream error"(?P<rest>.*)')
_ERROR_FIELD = re.compile(r'error\.error="(?P<text>(?:[^"\\]|\\.)*)"')
_KEEP = 20


class OpencodeParser:
    """Follows one attempt's ``opencode run --format json`` output; see the module docstring."""

    waiting = None  # the CLI announces no wait the stall clock should allow (``OutputParser``)

    def __init__(self, retries: int | None = None) -> None:
        """``retries``: give up after this many failed tries in a row (None: never)."""
        self._lines = JsonLines(self._event)
        self._stderr = TextTail()
        self._retries = retries
        self.failed_tries = 0  # in a row, since the last progress
        self._last_failure = ""  # the message of the latest failed try ("" for a timed-out one)
        self._step_open = False  # a step_start without its step_finish yet
        self.gave_up: str | None = None  # the failure being retried when the bound hit
        self.session_id: str | None = None
        self.last_finish: str | None = None  # the reason of the latest step_finish
        self.error: Event | None = None  # the error event, if one came after the last step
        self.steps = 0
        self.tokens_in: Any = None
        self.tokens_out: Any = None
        self.cached_tokens: Any = None
        self.cost_usd: Any = None
        self.last_text: str | None = None
        self.rejected: list[dict[str, Any]] = []
        self.tool_failures: list[dict[str, Any]] = []
        self._notices: list[str] = []

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout."""
        self._lines.feed(data)

    def feed_stderr(self, data: bytes) -> None:
        """Take a chunk of stderr (with ``OPENCODE_PRINT_LOGS=1``: one line per failed try of
        the main model; the title model's, ``small=true``, do not count)."""
        for line in self._stderr.feed(data):
            match = _STREAM_ERROR.search(line)
            if match is None or "small=true" in match["rest"]:
                continue
            found = _ERROR_FIELD.search(match["rest"])
            self._failed_try(found["text"] if found else "stream error")

    def notices(self) -> list[str]:
        """Rejected permissions and API errors since the last call."""
        taken, self._notices = self._notices, []
        return taken

    @property
    def finished(self) -> bool:
        """True once an error arrived or a step finished with ``stop`` (nothing follows either),
        or opencode went on retrying past the bound."""
        return self.error is not None or self.last_finish == "stop" or self.gave_up is not None

    def _failed_try(self, message: str) -> None:
        self.failed_tries += 1
        self._last_failure = message
        if self._retries is not None and self.failed_tries > self._retries and self.gave_up is None:
            self.gave_up = message
            self._notices.append(
                f"opencode failed {self.failed_tries} API tries in a row (pagent allows "
                f"{self._retries} retries): stopping it; pagent's retry policy decides"
            )

    def _progress(self) -> None:
        self.failed_tries = 0

    @property
    def status(self) -> str | None:
        """opencode reports no live state on stdout."""
        return None

    # -- reading ---------------------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        if isinstance(event.get("sessionID"), str):
            self.session_id = event["sessionID"]
        kind = event.get("type")
        part = event.get("part") if isinstance(event.get("part"), dict) else {}
        assert isinstance(part, dict)
        if kind == "step_start":
            self.error = None  # a new step after an error: opencode carried on
            if self._step_open:  # the previous try of this step never finished: it timed out
                self._failed_try("")
            self._step_open = True
        elif kind == "text" and isinstance(part.get("text"), str):
            self.last_text = part["text"]
            self._progress()
        elif kind == "tool_use":
            self._tool(part)
            self._progress()
        elif kind == "step_finish":
            self._step_open = False
            self._progress()
            self._step_finish(part)
        elif kind == "error":
            self.error = event
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            assert isinstance(error, dict)
            self._notices.append(f"opencode error: {str(_message(error))[:300]}")

    def _tool(self, part: dict[str, Any]) -> None:
        state = part.get("state") if isinstance(part.get("state"), dict) else {}
        assert isinstance(state, dict)
        given = state.get("input") if isinstance(state.get("input"), dict) else {}
        assert isinstance(given, dict)
        if part.get("tool") == "invalid":  # what opencode makes of a call of a tool it lacks
            failure = {
                "tool_name": str(given.get("tool") or "?"),
                "tool_input": None,
                "error": str(given.get("error") or state.get("output") or "")[:500],
            }
            self.tool_failures = [*self.tool_failures[-(_KEEP - 1) :], failure]
            self._notices.append(f"tool unavailable: {failure['tool_name']}")
        elif state.get("status") == "error" and _REJECTED.search(str(state.get("error") or "")):
            denial = {"tool_name": str(part.get("tool") or "?"), "tool_input": state.get("input")}
            self.rejected = [*self.rejected[-(_KEEP - 1) :], denial]
            self._notices.append(f"permission rejected: {denial['tool_name']}")

    def _step_finish(self, part: dict[str, Any]) -> None:
        self.steps += 1
        self.last_finish = str(part.get("reason") or "")
        tokens = part.get("tokens") if isinstance(part.get("tokens"), dict) else {}
        assert isinstance(tokens, dict)
        cache = tokens.get("cache") if isinstance(tokens.get("cache"), dict) else {}
        assert isinstance(cache, dict)
        self.tokens_in = add_numbers(self.tokens_in, tokens.get("input"))
        # Cached input is reported apart from `input`; like Claude's count, every input token counts.
        self.tokens_in = add_numbers(self.tokens_in, cache.get("read"))
        self.tokens_in = add_numbers(self.tokens_in, cache.get("write"))
        self.cached_tokens = add_numbers(self.cached_tokens, cache.get("read"))
        self.tokens_out = add_numbers(self.tokens_out, tokens.get("output"))
        self.tokens_out = add_numbers(self.tokens_out, tokens.get("reasoning"))
        self.cost_usd = add_numbers(self.cost_usd, part.get("cost"))

    # -- judging ---------------------------------------------------------------------------------

    def outcome(self, exit: Exit) -> Outcome:  # noqa: PLR0911 - one return per class, in order
        """Judge the attempt from its last step and error events (see the module docstring)."""
        self._lines.close()
        self._stderr.close()
        metrics = self.metrics()
        if self.error is not None:
            return Outcome(succeeded=False, reason=self.failure_class(), metrics=metrics)
        if self.gave_up is not None:
            return Outcome(succeeded=False, reason=_retried_class(self.gave_up), metrics=metrics)
        if self.last_finish is None:
            return Outcome(succeeded=False, reason=NO_RESULT, metrics=metrics)
        if self.rejected:
            return Outcome(succeeded=False, reason=NEEDS_INPUT, metrics=metrics)
        if self.tool_failures:
            return Outcome(succeeded=False, reason=TOOL_FAILED, metrics=metrics)
        if self.last_finish != "stop":
            return Outcome(succeeded=False, reason=AGENT_ERROR, metrics=metrics)
        return Outcome(succeeded=True, reason=Reason.OK, metrics=metrics)

    def failure_class(self) -> str:
        """The class of the error event (module docstring, in order)."""
        error = (self.error or {}).get("error")
        error = error if isinstance(error, dict) else {}
        data = error.get("data") if isinstance(error.get("data"), dict) else {}
        assert isinstance(data, dict)
        text = str(_message(error))
        status = http_status(data.get("statusCode")) or status_in_text(str(data.get("responseBody") or ""))
        if status in (401, 403) or error.get("name") == "ProviderAuthError":
            return AUTH
        if status == 429 or (status is None and _RATE_TEXT.search(text)):
            return RATE_LIMITED
        if status is not None:
            return api_error(status)
        if _TIMEOUT_TEXT.search(text):
            return API_TIMEOUT
        return AGENT_ERROR

    def metrics(self) -> dict[str, Any]:
        """What the attempt cost and did: tokens and cost summed over its steps."""
        error = (self.error or {}).get("error")
        return {
            "session_id": self.session_id,
            "turns": self.steps or None,
            "cost_usd": self.cost_usd,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cached_tokens": self.cached_tokens,
            "result_text": self.last_text[:2000] if self.last_text is not None else None,
            "error_text": (str(_message(error))[:2000] if isinstance(error, dict) else None)
            or self.gave_up
            or (self._stderr.text()[-2000:] if self.last_finish != "stop" else "")
            or None,
            "api_retries": self.failed_tries,
            "gave_up": self.gave_up is not None and self.error is None,
            "permission_denials": list(self.rejected),
            "tool_failures": list(self.tool_failures),
        }


def _retried_class(message: str) -> str:
    """The class of a failure opencode was still retrying, from its message alone."""
    if not message or _TIMEOUT_TEXT.search(message):
        return API_TIMEOUT
    if _RATE_TEXT.search(message):
        return RATE_LIMITED
    if _AUTH_TEXT.search(message):
        return AUTH
    return Reason.API_ERROR.value


def _message(error: dict[str, Any]) -> object:
    data = error.get("data")
    if isinstance(data, dict) and data.get("message"):
        return data["message"]
    return error.get("message") or error.get("name") or ""
