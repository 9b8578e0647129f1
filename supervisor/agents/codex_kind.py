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

Headless features (``supervisor.agents.base``):

- ``result_schema`` -> ``--output-schema FILE``: the schema is written as a file of the attempt's
  own directory (``{attempt_dir}/output-schema.json``, filled in by the executor) and Codex sends
  it to the Responses API as the final answer's format (``text.format``: ``json_schema``,
  ``strict: true``, named ``codex_output_schema``); the final ``agent_message`` is then that
  JSON, which the parser reports as ``structured_output``.
- Resuming: ``codex exec [OPTIONS] resume THREAD -`` continues the thread (the thread id of
  ``thread.started``, recorded as the attempt's session) with stdin as the new prompt, and the
  server is sent the whole earlier conversation; the thread keeps its id. The exec options stay
  before ``resume`` (``resume`` takes no ``-s``: a thread resumed without the exec-level
  ``-s workspace-write`` runs read-only). Codex cannot be told a thread id before it starts, so
  ``session_args`` is ``None``: an attempt's session is known once Codex reports it, and a retry
  (``resume_on_retry``, or a person's answer) continues the latest one it reported. A thread
  Codex cannot find ends with exit 1 and "no rollout found for thread id" on stderr
  (``no-result``).

Preflight: the same command plus ``--skip-git-repo-check`` (it runs in a scratch directory),
with no retries of Codex's own.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import MappingProxyType

from supervisor.agents import clikind
from supervisor.agents.base import NO_SETUP, Notice, Setup
from supervisor.agents.codex import CodexParser
from supervisor.plan.catalog import AgentProblem
from supervisor.plan.model import AgentSpec, TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import AGENT_HOME, ATTEMPT_DIR, AttemptKey, Executor

COMMAND = ("codex", "exec", "--json", "-s", "workspace-write")
PROVIDER = "pagent"
API_KEY_ENV = "OPENAI_API_KEY"
STREAM_MAX_RETRIES = 1
STREAM_IDLE_TIMEOUT_MS = 300_000
RECONNECTS = 1  # stream reconnects let through with the built-in provider (Codex: 5)
SCHEMA_FILE = "output-schema.json"  # the task's result_schema, in the attempt's own directory


class CodexKind:
    """Codex as an agent kind (``kind = "codex"``); see the module docstring."""

    name = "codex"
    resumes = True  # codex exec resume THREAD: an answer continues the thread that asked
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
        """The command, the flags from the plan keys, then the agent's and the task's extra args;
        with ``resume_on_retry`` and a thread to continue, ``resume THREAD -`` after them all (the
        exec options must come before the subcommand; ``-``: the prompt is stdin)."""
        flags = _flags(agent, request_retries=clikind.CLI_RETRIES, stream_retries=STREAM_MAX_RETRIES)
        argv = (*agent.command, *flags, *agent.extra_args, *settings.extra_args)
        if settings.resume_on_retry and resume:
            argv = (*argv, "resume", resume, "-")
        return argv

    def setup(self, agent: AgentSpec, settings: TaskSettings) -> Setup:
        """With ``home = "own"``: ``CODEX_HOME`` is the agent's kept directory. With a
        ``result_schema``: the schema as the attempt's file ``SCHEMA_FILE``."""
        own = clikind.home_of(agent) == "own"
        schema = settings.result_schema
        if not own and schema is None:
            return NO_SETUP
        return Setup(
            env={"CODEX_HOME": AGENT_HOME} if own else {},
            files={SCHEMA_FILE: schema.encode()} if schema is not None else {},
            home=agent.name if own else None,
        )

    def parser(self) -> CodexParser:
        return CodexParser(reconnects=RECONNECTS)

    # -- the headless features (module docstring) -------------------------------------------------

    def session_args(self, session_id: str, resume: str | None) -> tuple[str, ...] | None:
        """``None``: Codex makes its thread id itself (``thread.started``) and takes none; ``argv``
        resumes the thread an earlier attempt reported."""
        return None

    def structured_output_args(self, schema: str) -> tuple[str, ...]:
        """``--output-schema FILE``: ``schema`` is the task's ``result_schema``, which ``setup``
        writes as the attempt's file ``SCHEMA_FILE`` (Codex takes a path, not the JSON text)."""
        return ("--output-schema", f"{ATTEMPT_DIR}/{SCHEMA_FILE}")

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
