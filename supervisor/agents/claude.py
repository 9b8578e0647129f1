"""The ``claude`` agent kind: Claude Code headless (``claude -p --output-format stream-json``).

The parser is tolerant by design: one JSON object per line is expected, but non-JSON lines,
unknown event types, unknown fields, over-long lines and a partial last line are all skipped
(``supervisor.agents.jsonlines``); the raw stream stays in the attempt's log unchanged. The
outcome comes from the ``result`` event, never from the exit code nor from its ``subtype``:
Claude Code 2.1 ends every API failure with ``subtype: "success"`` and ``is_error: true``, exits
0 on some failures and hangs after others. What each failure is and how it is recognised:
``supervisor.agents.claude_classes``.

The kind adds flags from the task's settings to the argv: ``--max-budget-usd``
(``max_budget_usd``), ``--fallback-model``, ``--setting-sources``, ``--strict-mcp-config``; the
session pagent chose (``--session-id UUID``; to continue an earlier attempt, ``--resume SESSION
--fork-session --session-id UUID``: 2.1.328 refuses ``--session-id`` with ``--resume`` without
``--fork-session``, and the forked session carries the whole conversation) and the structured
result (``--json-schema SCHEMA``: the CLI gives the model a ``StructuredOutput`` tool and its
``result`` event carries ``structured_output``). It refuses ``--dangerously-skip-permissions``
as root (Claude Code does), and checks the CLI before a night (``supervisor.agents.preflight``).

Besides the result, the parser keeps what the ``system/init`` event says of MCP servers (those
whose ``status`` is ``failed`` or ``needs-auth``: ``mcp_server_errors``), the models that
answered (``modelUsage``, most output first: ``model``) and the CLI's switches to the fallback
model (``system/model_fallback``, a notice each).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from datetime import datetime
from types import MappingProxyType
from typing import Any

from supervisor.agents import claude_classes as classes
from supervisor.agents.base import NO_SETUP, Notice, Outcome, Setup, Waiting, standard_argv
from supervisor.agents.jsonlines import JsonLines
from supervisor.agents.jsonlines import http_status as _status
from supervisor.agents.jsonlines import number as _number
from supervisor.plan.catalog import AgentProblem, no_agent_keys
from supervisor.plan.model import AgentSpec, TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import AttemptKey, Executor, Exit

_INPUT_TOKENS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")
# The CLI retries a 401 like a 5xx, 10 times by default (about 3 minutes): the preflight bounds
# it, unless the user set it, so a bad key is reported as such, not as a timeout.
_PREFLIGHT_ENV = MappingProxyType({"CLAUDE_CODE_MAX_RETRIES": "4"})
_MCP_BROKEN = frozenset({"failed", "needs-auth"})  # an MCP server's init status that is no server


class ClaudeParser:
    """Follows one attempt's stream-json; see the module docstring for the rules."""

    def __init__(self) -> None:
        self._lines = JsonLines(self._event)
        self.session_id: str | None = None
        self.started = False  # the init event came: the CLI has a session (it may be resumed)
        self.model: str | None = None
        self.result: dict[str, Any] | None = None
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
        self._waiting: Waiting | None = None  # ... and no event at all came after it
        self.progress_since_retry = False  # a real turn happened after the latest api_retry
        self.denied: list[dict[str, Any]] = []  # system/permission_denied events, last 50
        self.mcp_errors: list[dict[str, str]] = []  # MCP servers the init event shows broken
        self._notices: list[str] = []

    # -- reading ---------------------------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout; complete lines are parsed, the rest waits for its newline."""
        self._lines.feed(data)

    def feed_stderr(self, data: bytes) -> None:
        """Claude Code reports everything on stdout."""

    def close(self) -> None:
        """The stream has ended: parse a last line that came without its newline."""
        self._lines.close()

    @property
    def events(self) -> int:
        """How many JSON events were read."""
        return self._lines.events

    @property
    def skipped_lines(self) -> int:
        """How many lines were not events (non-JSON, non-object or over-long)."""
        return self._lines.skipped_lines

    def _event(self, event: dict[str, Any]) -> None:
        kind, subtype = event.get("type"), event.get("subtype")
        self._waiting = None  # any event ends an announced wait; a new api_retry starts one
        if isinstance(event.get("session_id"), str) and self.session_id is None:
            self.session_id = event["session_id"]
        if kind == "system" and subtype == "init":
            self.started = True
            if isinstance(event.get("session_id"), str):
                self.session_id = event["session_id"]
            self.model = event.get("model") if isinstance(event.get("model"), str) else None
            self._mcp(event.get("mcp_servers"))
        elif kind == "system" and subtype == "model_fallback":
            self._notices.append(
                f"switched to the fallback model {event.get('fallback_model', '?')} "
                f"({event.get('trigger', '?')}, from {event.get('original_model', '?')})"
            )
        elif kind == "system" and subtype == "api_retry":
            self.api_retries += 1
            self.last_retry = event
            self._retrying = True
            self.progress_since_retry = False
            delay = _number(event.get("retry_delay_ms"))
            self._waiting = Waiting(
                max(0.0, delay / 1000) if delay is not None else 0.0, classes.retry_reason(event)
            )
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
            self.progress_since_retry = True
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
            self.progress_since_retry = True
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
            del self.error_texts[: -classes.KEEP_TEXTS]

    def _mcp(self, servers: Any) -> None:
        """The MCP servers of the init event that did not start (a failed one, one that needs a
        login nobody can give at night), one notice each."""
        if not isinstance(servers, list):
            return
        for server in servers[:50]:
            if isinstance(server, dict) and server.get("status") in _MCP_BROKEN:
                found = {"name": str(server.get("name", "?"))[:200], "status": str(server["status"])}
                if isinstance(server.get("error"), str):
                    found["error"] = server["error"][:500]
                self.mcp_errors.append(found)
                self._notices.append(f"MCP server {found['name']}: {found['status']}")

    def _rate_limit(self, info: dict[str, Any]) -> None:
        if info.get("status") == "rejected" and (self.rate_limit or {}).get("status") != "rejected":
            kind = info.get("rateLimitType")
            at = classes.epoch(info.get("resetsAt"))
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

    @property
    def waiting(self) -> Waiting | None:
        """The API retry the CLI announced last (``retry_delay_ms``), while nothing followed it."""
        return self._waiting

    def outcome(self, exit: Exit) -> Outcome:
        """Judge the attempt from the result event (see the module docstring)."""
        self.close()
        metrics = self.metrics()
        if self.result is None:
            return Outcome(succeeded=False, reason=Reason.NO_RESULT, metrics=metrics)
        if self.result.get("is_error") is False and self.result.get("subtype", "success") == "success":
            if metrics["permission_denials"]:
                return Outcome(succeeded=False, reason=Reason.NEEDS_INPUT, metrics=metrics)
            return Outcome(succeeded=True, reason=Reason.OK, metrics=metrics)
        return Outcome(succeeded=False, reason=classes.failure_class(self), metrics=metrics)

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
        limited = result.get("is_error") is not False and classes.usage_limited(self)
        return {
            # Only a session the CLI started (its init event) exists to be resumed: a failed
            # --resume ("No conversation found") ends with a result naming an id all the same.
            "session_id": (result.get("session_id") or self.session_id) if self.started else None,
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
            "resets": classes.resets(self) if limited else None,
            "resets_at": classes.resets_at(self) if limited else None,
            "limit_type": (self.rate_limit or {}).get("rateLimitType") if limited else None,
            "model": answered_by(result.get("modelUsage")),
            "structured_output": result.get("structured_output"),
            "mcp_server_errors": list(self.mcp_errors),
        }


def answered_by(usage: Any) -> str | None:
    """The models that answered, from the result's ``modelUsage`` ("claude-fallback-1", or
    "a, b" when the CLI switched models during the attempt): those with output, most first."""
    if not isinstance(usage, dict) or not usage:
        return None
    tokens = {
        str(name): _number(figures.get("outputTokens")) or 0
        for name, figures in usage.items()
        if isinstance(figures, dict)
    }
    spoke = [name for name, count in tokens.items() if count > 0] or list(tokens)
    return ", ".join(sorted(spoke, key=lambda name: -tokens[name]))[:500] or None


class ClaudeKind:
    """Claude Code as an agent kind (``kind = "claude"``); see the module docstring."""

    name = "claude"
    default_preflight = True
    resumes = True
    failure_classes = frozenset(
        {
            Reason.OK,
            Reason.MAX_TURNS,
            Reason.BUDGET,
            Reason.AUTH,
            Reason.BILLING,
            Reason.USAGE_LIMIT,
            Reason.RATE_LIMITED,
            Reason.API_ERROR,
            Reason.API_TIMEOUT,
            Reason.CLAUDE_ERROR,
            Reason.NO_RESULT,
            Reason.NEEDS_INPUT,
        }
    )
    # Its login, sessions and settings; ~/.claude.json only if it exists (an empty one made
    # for it would be a broken config). Measured with 2.1.328: it works with these alone.
    state_paths = ("~/.claude/", "~/.claude.json")

    def builtin_agents(self) -> Sequence[AgentSpec]:
        """``claude``: the CLI on PATH in headless stream-json mode."""
        command = ("claude", "-p", "--output-format", "stream-json", "--verbose")
        return [AgentSpec("claude", command, MappingProxyType({}), self.name, preflight=True)]

    def check_args(self, args: Sequence[str]) -> None:
        """Refuse what cannot work: Claude Code refuses --dangerously-skip-permissions as root."""
        if "--dangerously-skip-permissions" in args and os.geteuid() == 0:
            raise ValueError(
                "--dangerously-skip-permissions is refused by Claude Code when running as root; "
                "use --permission-mode acceptEdits (or run as another user)"
            )

    def check_agent(self, agent: AgentSpec) -> AgentProblem:
        """No kind-specific keys: a model or an endpoint is given by extra_args and env."""
        return no_agent_keys(agent)

    def setup(self, agent: AgentSpec, settings: TaskSettings) -> Setup:
        """Nothing beside the argv: Claude Code keeps its own state in the user's home."""
        return NO_SETUP

    def argv(self, agent: AgentSpec, settings: TaskSettings, resume: str | None) -> tuple[str, ...]:
        """The standard argv, then the flags of the settings (see the module docstring) and
        ``--resume`` (``resume_on_retry``)."""
        argv = standard_argv(agent, settings)
        if settings.max_budget_usd is not None:
            argv += ["--max-budget-usd", f"{settings.max_budget_usd:g}"]
        if settings.fallback_model is not None:
            argv += ["--fallback-model", settings.fallback_model]
        if settings.setting_sources is not None:
            argv += ["--setting-sources", ",".join(settings.setting_sources)]
        if settings.strict_mcp_config:
            argv.append("--strict-mcp-config")
        if settings.resume_on_retry and resume:
            argv += ["--resume", resume]
        return tuple(argv)

    def session_args(self, session_id: str, resume: str | None) -> tuple[str, ...]:
        """``--session-id UUID``; continuing ``resume``: ``--resume S --fork-session`` before it."""
        if resume:
            return ("--resume", resume, "--fork-session", "--session-id", session_id)
        return ("--session-id", session_id)

    def structured_output_args(self, schema: str) -> tuple[str, ...]:
        """``--json-schema SCHEMA`` (the JSON text itself: the CLI takes no file)."""
        return ("--json-schema", schema)

    def parser(self) -> ClaudeParser:
        return ClaudeParser()

    async def preflight(
        self, agent: AgentSpec, executor: Executor, key: AttemptKey, *, max_wait: float, notice: Notice
    ) -> str:
        """``claude --version``, then a one-line prompt (``supervisor.agents.preflight``)."""
        from supervisor.agents.preflight import run_preflight  # anyio: not needed to load a plan

        return await run_preflight(
            agent,
            executor,
            key,
            self.parser(),
            _PREFLIGHT_ENV,
            max_wait=max_wait,
            new_parser=self.parser,
            notice=notice,
        )
