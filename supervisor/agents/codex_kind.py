"""The ``codex`` agent kind: OpenAI Codex CLI headless (``codex exec --json``), 0.169.

The built-in agent runs ``codex exec --json -s workspace-write``: the workspace-write sandbox
lets it edit its worktree unattended (the default read-only sandbox refuses edits with exit 0,
sometimes without any event: ``supervisor.agents.codex``). The prompt is its stdin, read to EOF
("Reading prompt from stdin..."). Events and failure classes: ``supervisor.agents.codex``.

Plan keys: ``model`` -> ``-m MODEL``. ``base_url`` -> a provider of pagent's, given on the
command line (``-c model_provider=pagent -c model_providers.pagent={...}``), so it works with
the user's ``CODEX_HOME`` and never writes into it: ``wire_api = "responses"``, the key from
``OPENAI_API_KEY`` (``env_key``), and the retry and idle bounds, which Codex reads only inside a
provider table (top-level keys of the same names are ignored):

- ``request_max_retries = 2`` (Codex: 4) and ``stream_max_retries = 1`` (Codex: 5): a
  constant 500 fails in about 2 s after 6 requests instead of about 27 s after 30; a 429 is
  retried by Codex only when the server sends ``retry-after``;
- ``stream_idle_timeout_ms`` = ``idle_timeout`` or 300 000 (Codex's own default, kept: a long
  reasoning step may be silent for minutes); with one stream retry a dead stream ends in ~10 min.

Without ``base_url`` Codex's built-in OpenAI provider is used as the user's login set it up, and
its retry settings cannot be changed ("Built-in providers cannot be overridden"): the parser
then stops Codex at its second stream reconnect ("Reconnecting... 2/5"), and ``idle_timeout``
is refused. ``home = "own"`` sets ``CODEX_HOME`` to a directory pagent keeps for the agent
(``.pagent/homes/NAME``: sessions, logs, state), without the user's login.

Preflight: the same command plus ``--skip-git-repo-check`` (it runs in a scratch directory),
with no retries of Codex's own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import MappingProxyType

from supervisor.agents import clikind
from supervisor.agents.base import NO_SETUP, NoHeadless, Notice, Setup
from supervisor.agents.codex import CodexParser
from supervisor.plan.catalog import AgentProblem
from supervisor.plan.model import AgentSpec, TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import AGENT_HOME, AttemptKey, Executor

COMMAND = ("codex", "exec", "--json", "-s", "workspace-write")
PROVIDER = "pagent"
API_KEY_ENV = "OPENAI_API_KEY"
STREAM_MAX_RETRIES = 1
STREAM_IDLE_TIMEOUT_MS = 300_000
RECONNECTS = 1  # stream reconnects let through with the built-in provider (Codex: 5)


class CodexKind(NoHeadless):
    """Codex as an agent kind (``kind = "codex"``); see the module docstring."""

    name = "codex"
    # Its login, config, sessions and logs; with home = "own" CODEX_HOME is the kept directory.
    state_paths = ("${CODEX_HOME:-~/.codex}/",)
    default_preflight = True
    failure_classes = frozenset(
        {
            Reason.OK,
            Reason.AUTH,
            Reason.BILLING,
            Reason.USAGE_LIMIT,
            Reason.RATE_LIMITED,
            Reason.API_ERROR,
            Reason.API_TIMEOUT,
            Reason.AGENT_ERROR,
            Reason.NO_RESULT,
            Reason.NEEDS_INPUT,
            Reason.TOOL_FAILED,
        }
    )

    def builtin_agents(self) -> Sequence[AgentSpec]:
        """``codex``: the CLI on PATH, headless, JSON events, allowed to edit its worktree."""
        return [AgentSpec("codex", COMMAND, MappingProxyType({}), self.name, preflight=True)]

    def check_args(self, args: Sequence[str]) -> None:
        """Refuse what cannot work: ``--full-auto`` is gone from Codex (it exits 2)."""
        if "--full-auto" in args:
            raise ValueError(
                "--full-auto no longer exists in Codex (exit 2); "
                "use -s workspace-write (the codex agent's default)"
            )

    def check_agent(self, agent: AgentSpec) -> AgentProblem:
        """``idle_timeout`` needs a provider of pagent's (``base_url``)."""
        if agent.idle_timeout is not None and agent.base_url is None:
            return "idle_timeout", (
                "needs base_url: Codex takes stream_idle_timeout_ms only in a provider table, "
                "and its built-in OpenAI provider cannot be changed"
            )
        return None

    def argv(self, agent: AgentSpec, settings: TaskSettings, resume: str | None) -> tuple[str, ...]:
        """The command, the flags from the plan keys, then the agent's and the task's extra args."""
        flags = _flags(agent, request_retries=clikind.CLI_RETRIES, stream_retries=STREAM_MAX_RETRIES)
        return (*agent.command, *flags, *agent.extra_args, *settings.extra_args)

    def setup(self, agent: AgentSpec, settings: TaskSettings) -> Setup:
        """With ``home = "own"``: ``CODEX_HOME`` is the agent's kept directory."""
        if clikind.home_of(agent) == "own":
            return Setup(env={"CODEX_HOME": AGENT_HOME}, home=agent.name)
        return NO_SETUP

    def parser(self) -> CodexParser:
        return CodexParser(reconnects=RECONNECTS)

    # The headless hooks are stubs for now (``NoHeadless``'s answers): Codex 0.169 can continue a
    # session (``codex exec resume SESSION``, the thread id of ``thread.started``) and return a
    # result for a schema (``--output-schema FILE``, the schema written as an attempt file), but
    # neither is wired yet; until then a task with ``result_schema`` is refused at load for a
    # Codex agent, and an answer leads its prompt ("A person answered: ...").

    def structured_output_args(self, schema: str) -> tuple[str, ...] | None:
        """Not yet (see above): ``--output-schema FILE`` with the schema as an attempt file."""
        return None

    async def preflight(
        self, agent: AgentSpec, executor: Executor, key: AttemptKey, *, max_wait: float, notice: Notice
    ) -> str:
        """``codex --version``, then a one-line prompt without Codex's own retries."""
        flags = _flags(agent, request_retries=clikind.PREFLIGHT_RETRIES, stream_retries=0)
        return await clikind.preflight(
            agent,
            executor,
            key,
            argv=(*agent.command, "--skip-git-repo-check", *flags, *agent.extra_args),
            setup=self.setup(agent, TaskSettings()),
            new_parser=lambda: CodexParser(reconnects=clikind.PREFLIGHT_RETRIES),
            max_wait=max_wait,
            notice=notice,
        )


def _flags(agent: AgentSpec, *, request_retries: int, stream_retries: int) -> list[str]:
    """``-m MODEL`` and, with a ``base_url``, pagent's provider table as ``-c`` overrides."""
    flags = ["-m", agent.model] if agent.model else []
    if agent.base_url is not None:
        idle = STREAM_IDLE_TIMEOUT_MS if agent.idle_timeout is None else round(agent.idle_timeout * 1000)
        table = ", ".join(
            [
                f"name = {json.dumps(PROVIDER)}",
                f"base_url = {json.dumps(agent.base_url)}",
                f"env_key = {json.dumps(API_KEY_ENV)}",
                'wire_api = "responses"',
                f"request_max_retries = {request_retries}",
                f"stream_max_retries = {stream_retries}",
                f"stream_idle_timeout_ms = {idle}",
            ]
        )
        flags += ["-c", f"model_provider={PROVIDER}", "-c", f"model_providers.{PROVIDER}={{{table}}}"]
    return flags
