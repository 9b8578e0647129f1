"""The ``codex`` agent kind's parser: reads ``codex exec --json`` (OpenAI Codex CLI 0.169).

Codex prints one JSON object per line: ``thread.started {thread_id}`` (the session),
``turn.started``, ``item.started``/``item.updated``/``item.completed`` (``item.type`` one of
``agent_message``, ``reasoning``, ``command_execution``, ``file_change``, ``mcp_tool_call``,
``web_search``, ``todo_list``, ``error``), and at the end ``turn.completed {usage}`` or
``turn.failed {error.message}``.  While it retries the API it prints
``{"type": "error", "message": "Reconnecting... 2/5 (...)"}``.  Reading is tolerant
(`supervisor.agents.jsonlines`); the outcome comes from the turn's end event, never the exit code.

Rules, in order:

=================  ==========================================================================
reason             recognised by
=================  ==========================================================================
``no-result``      neither ``turn.completed`` nor ``turn.failed`` (e.g. "Not inside a trusted
                   directory" on stderr: Codex outside a git repository without
                   ``--skip-git-repo-check``)
``auth``           ``turn.failed`` naming status 401/403
``billing``        "Quota exceeded. Check your plan and billing details." (429
                   ``insufficient_quota``: waiting does not help)
``usage-limit``    "usage limit" in the message (ChatGPT plan logins)
``rate-limited``   status 429 ("exceeded retry limit, last status: 429 Too Many Requests")
``api-error N``    any other status N; Codex words a 500 as "We're currently experiencing high
                   demand" without its status, which counts as 500, and shows a 400 as the
                   server's raw JSON error body (``{"error": {...}}``), which counts as 400
``api-timeout``    "idle timeout waiting for SSE" (``stream_idle_timeout_ms``) or another timeout
``agent-error``    any other ``turn.failed``
``needs-input``    a completed turn with a ``command_execution`` whose status is ``declined``
``tool-failed``    a completed turn in which the sandbox refused an edit: a ``file_change`` with
                   status ``failed``, a failed command whose output says "Read-only file
                   system", or (from stderr) "patch rejected"; or Codex could not make its
                   sandbox helper (stderr: "could not create PATH aliases", when ``CODEX_HOME``
                   lies under the temp dir), so that every command failed without an event
``ok``             ``turn.completed`` otherwise
=================  ==========================================================================

Bounded retries: with ``reconnects`` (the kind passes it) the parser gives up once Codex
announces more stream reconnects than that ("Reconnecting... n/5" beyond the bound): the attempt
counts as finished (the engine stops the CLI after ``kill_grace``) and fails with the class of
the error Codex was retrying -- for Codex's built-in OpenAI provider, whose retry settings
cannot be changed ("Built-in providers cannot be overridden").  A ``turn.failed`` that still
arrives takes precedence.

Structured results (``--output-schema FILE``, ``supervisor.agents.codex_kind``): Codex asks the
API for a final answer in the schema's JSON and prints it as the last ``agent_message``'s text;
that text, parsed as JSON, is the outcome's ``structured_output`` (``None`` when it is no JSON:
the model answered in prose). The engine reads it only for a task with a ``result_schema``.

Token usage in a resumed thread (``codex exec resume``): ``turn.completed`` reports the
thread's running total, the earlier attempts' tokens included (measured with 0.169: 1000 in,
then 1007 after a resumed turn of 7); it is recorded as Codex reports it.

Caveat measured with 0.169: a command the read-only sandbox refuses *quickly* produces no item
at all (only commands that run for about half a second or more show up as failed), so a
read-only sandbox can end in a silent success; the kind therefore always passes
``-s workspace-write``, and checks such as ``require_changes`` catch the rest.  An ``error``
*item* (e.g. "Model metadata for `m` not found") is a warning, not a failure.
"""

from __future__ import annotations

import json
import re
from typing import Any

from supervisor.agents.base import Outcome
from supervisor.agents.evidence import Event, TextTail, add_numbers, status_in_text
from supervisor.agents.jsonlines import JsonLines
from supervisor.reasons import Reason, api_error
from supervisor.seam import Exit

AUTH = Reason.AUTH
BILLING = Reason.BILLING
USAGE_LIMIT = Reason.USAGE_LIMIT
RATE_LIMITED = Reason.RATE_LIMITED
API_TIMEOUT = Reason.API_TIMEOUT
AGENT_ERROR = Reason.AGENT_ERROR
NO_RESULT = Reason.NO_RESULT
NEEDS_INPUT = Reason.NEEDS_INPUT
TOOL_FAILED = Reason.TOOL_FAILED

_TOOL_ITEMS = frozenset({"command_execution", "file_change", "mcp_tool_call", "web_search"})
_RECONNECT = re.compile(r"^Reconnecting\.\.\.\s*(\d+)/(\d+)\s*(?:\((.*)\))?", re.DOTALL)
_HIGH_DEMAND = re.compile(r"experiencing high demand", re.IGNORECASE)
_QUOTA = re.compile(r"quota exceeded|billing details|insufficient_quota", re.IGNORECASE)
_USAGE_LIMIT = re.compile(r"usage limit", re.IGNORECASE)
_RATE = re.compile(r"rate.?limit|too many requests", re.IGNORECASE)
_TIMEOUT = re.compile(r"idle timeout|timed out|timeout", re.IGNORECASE)
_READ_ONLY = re.compile(r"read-only file system", re.IGNORECASE)
_PATCH_REJECTED = re.compile(r"patch rejected|blocked by read-only sandbox", re.IGNORECASE)
# Codex refuses to make its sandbox helper (codex-linux-sandbox) when CODEX_HOME lies under the
# temp dir; every command then fails ("bwrap: execvp codex-linux-sandbox") without any event.
_NO_SANDBOX_HELPER = re.compile(r"could not create PATH aliases", re.IGNORECASE)
_KEEP = 20


class CodexParser:
    """Follows one attempt's ``codex exec --json`` output; see the module docstring."""

    waiting = None  # the CLI announces no wait the stall clock should allow (``OutputParser``)

    def __init__(self, reconnects: int | None = None) -> None:
        """``reconnects``: give up after this many announced stream reconnects (None: never)."""
        self._lines = JsonLines(self._event)
        self._stderr = TextTail()
        self._reconnects = reconnects
        self.gave_up: str | None = None  # the error Codex was still retrying when the bound hit
        self.session_id: str | None = None
        self.ended: str | None = None  # "completed" or "failed": the last turn's end event
        self.failure: str = ""  # turn.failed's message
        self.errors: list[str] = []  # top-level error messages that are not reconnects, last 5
        self.tokens_in: Any = None
        self.tokens_out: Any = None
        self.cached_tokens: Any = None
        self.turns = 0  # model responses: runs of output between tool results
        self._between = True  # no output since the prompt or the last tool result
        self._started: set[str] = set()  # ids of tool items seen starting
        self.last_message: str | None = None
        self.api_retries = 0
        self._retry: str | None = None  # the live "Reconnecting" status
        self.tool_failures: list[dict[str, Any]] = []
        self.declined: list[dict[str, Any]] = []
        self.warnings: list[str] = []
        self._notices: list[str] = []

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout."""
        self._lines.feed(data)

    def feed_stderr(self, data: bytes) -> None:
        """Take a chunk of stderr: Codex reports a rejected patch only there."""
        self._stderr.feed(data)

    def notices(self) -> list[str]:
        """API retries, tool calls the sandbox refused, warnings, since the last call."""
        taken, self._notices = self._notices, []
        return taken

    @property
    def finished(self) -> bool:
        """True once the turn has ended (``turn.completed`` or ``turn.failed``), or Codex went on
        retrying past the bound."""
        return self.ended is not None or self.gave_up is not None

    @property
    def status(self) -> str | None:
        """ "retrying API, attempt 2/5 (...)" while Codex reconnects, else ``None``."""
        return self._retry

    # -- reading ---------------------------------------------------------------------------------

    def _event(self, event: Event) -> None:
        kind = event.get("type")
        if kind == "thread.started" and isinstance(event.get("thread_id"), str):
            self.session_id = event["thread_id"]
        elif kind == "error":
            self._error(str(event.get("message") or ""))
            return
        elif kind in ("item.started", "item.updated", "item.completed"):
            item = event.get("item")
            if isinstance(item, dict):
                self._item(kind, item)
        elif kind == "turn.completed":
            self.ended = "completed"
            usage = event.get("usage") if isinstance(event.get("usage"), dict) else {}
            assert isinstance(usage, dict)
            self.tokens_in = add_numbers(self.tokens_in, usage.get("input_tokens"))
            self.tokens_out = add_numbers(self.tokens_out, usage.get("output_tokens"))
            self.cached_tokens = add_numbers(self.cached_tokens, usage.get("cached_input_tokens"))
        elif kind == "turn.failed":
            self.ended = "failed"
            error = event.get("error") if isinstance(event.get("error"), dict) else {}
            assert isinstance(error, dict)
            self.failure = str(error.get("message") or "")[-2000:]
        self._retry = None

    def _error(self, message: str) -> None:
        match = _RECONNECT.match(message)
        if match:
            self.api_retries += 1
            why = f" ({match[3][:200]})" if match[3] else ""
            self._retry = f"retrying API, attempt {match[1]}/{match[2]}{why}"
            self._notices.append(self._retry)
            if self._reconnects is not None and self.api_retries > self._reconnects and self.gave_up is None:
                self.gave_up = match[3] or message
                self._notices.append(
                    f"codex retried the API {self.api_retries} times (pagent allows {self._reconnects}): "
                    "stopping it; pagent's retry policy decides"
                )
            return
        self._retry = None
        self.errors = [*self.errors[-4:], message[-2000:]]

    def _item(self, kind: str, item: dict[str, Any]) -> None:
        item_type, item_id = item.get("type"), str(item.get("id"))
        if item_type == "error":
            text = str(item.get("message") or "")[:500]
            self.warnings = [*self.warnings[-(_KEEP - 1) :], text]
            self._notices.append(f"codex warning: {text}")
            return
        if item_type in ("agent_message", "reasoning"):
            self._output()
            if item_type == "agent_message" and kind == "item.completed":
                self.last_message = str(item.get("text") or "")
            return
        if item_type not in _TOOL_ITEMS:
            return
        if kind == "item.started" or item_id not in self._started:
            self._output()
            self._started.add(item_id)
        if kind == "item.completed":
            self._between = True
            self._tool_done(item)

    def _output(self) -> None:
        if self._between:
            self.turns += 1
            self._between = False

    def _tool_done(self, item: dict[str, Any]) -> None:
        status, item_type = item.get("status"), item.get("type")
        if item_type == "command_execution" and status == "declined":
            self.declined = [*self.declined[-(_KEEP - 1) :], _call(item)]
            self._notices.append(f"command declined: {str(item.get('command'))[:200]}")
        elif (item_type == "file_change" and status == "failed") or (
            item_type == "command_execution"
            and status == "failed"
            and _READ_ONLY.search(str(item.get("aggregated_output") or ""))
        ):
            self._tool_failed({**_call(item), "error": str(item.get("aggregated_output") or status)[-500:]})

    def _tool_failed(self, failure: dict[str, Any]) -> None:
        self.tool_failures = [*self.tool_failures[-(_KEEP - 1) :], failure]
        self._notices.append(f"tool call refused: {failure['tool_name']}: {failure['error'][:200]}")

    # -- judging ---------------------------------------------------------------------------------

    def outcome(self, exit: Exit) -> Outcome:
        """Judge the attempt from the turn's end event (see the module docstring)."""
        self._lines.close()
        self._stderr.close()
        for line in self._stderr.lines:
            if _PATCH_REJECTED.search(line) and not any(f.get("error") == line for f in self.tool_failures):
                self._tool_failed({"tool_name": "apply_patch", "tool_input": {}, "error": line})
            elif _NO_SANDBOX_HELPER.search(line):
                self._tool_failed({"tool_name": "exec_command", "tool_input": {}, "error": line})
        metrics = self.metrics()
        if self.ended is None and self.gave_up is not None:
            return Outcome(succeeded=False, reason=self.failure_class(self.gave_up), metrics=metrics)
        if self.ended is None:
            return Outcome(succeeded=False, reason=NO_RESULT, metrics=metrics)
        if self.ended == "failed":
            return Outcome(succeeded=False, reason=self.failure_class(), metrics=metrics)
        if self.declined:
            return Outcome(succeeded=False, reason=NEEDS_INPUT, metrics=metrics)
        if self.tool_failures:
            return Outcome(succeeded=False, reason=TOOL_FAILED, metrics=metrics)
        return Outcome(succeeded=True, reason=Reason.OK, metrics=metrics)

    def failure_class(self, given: str | None = None) -> str:  # noqa: PLR0911 - one return per class
        """The class of a failed turn, from its message, or of ``given`` (an error Codex was
        retrying); module docstring, in order."""
        failure = self.failure if given is None else given
        text = failure if given is not None else "\n".join([self.failure, *self.errors[-1:]])
        status = status_in_text(text)
        if status is None and _HIGH_DEMAND.search(text):
            status = 500
        if status is None and _is_error_body(failure):
            status = 400
        if status in (401, 403):
            return AUTH
        if _QUOTA.search(text):
            return BILLING
        if _USAGE_LIMIT.search(text):
            return USAGE_LIMIT
        if status == 429 or (status is None and _RATE.search(text)):
            return RATE_LIMITED
        if status is not None:
            return api_error(status)
        if _TIMEOUT.search(text):
            return API_TIMEOUT
        return AGENT_ERROR

    def metrics(self) -> dict[str, Any]:
        """What the attempt cost and did, as far as the stream says (Codex reports no cost)."""
        return {
            "session_id": self.session_id,
            "turns": self.turns or None,
            "cost_usd": None,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cached_tokens": self.cached_tokens,
            "api_retries": self.api_retries,
            "result_text": self.last_message[:2000] if self.last_message is not None else None,
            "structured_output": _json_of(self.last_message),
            "error_text": (
                self.failure
                or self.gave_up
                or "\n".join(self.errors[-1:])
                or (self._stderr.text()[-2000:] if self.ended != "completed" else "")
            )
            or None,
            "gave_up": self.gave_up is not None and self.ended is None,
            "permission_denials": list(self.declined),
            "tool_failures": list(self.tool_failures),
            "warnings": list(self.warnings),
        }


def _json_of(text: str | None) -> Any:
    """The final message as JSON (the structured result of ``--output-schema``), or ``None``
    when there is none or it is not JSON."""
    if not text or not text.strip():
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _is_error_body(text: str) -> bool:
    """True if `text` is an API's JSON error body, which Codex 0.169 shows as is only for a 400."""
    try:
        body = json.loads(text)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict)


def _call(item: dict[str, Any]) -> dict[str, Any]:
    """A refused tool call in the shape the views show (``tool_name``, ``tool_input``)."""
    if item.get("type") == "file_change":
        return {"tool_name": "apply_patch", "tool_input": {"changes": item.get("changes")}}
    return {"tool_name": "exec_command", "tool_input": {"command": item.get("command")}}
