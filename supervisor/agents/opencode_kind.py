"""The ``opencode`` agent kind: opencode headless (``opencode run --format json``), 1.18.

The built-in agent runs ``opencode run --format json``. In ``run`` opencode's default
permissions let it edit files and run commands; a permission the user's config sets to
``"ask"`` is rejected automatically (the run stops there with exit 0: ``needs-input``) and
``"deny"`` removes the tool (``tool-failed``); ``--auto`` would approve every ``"ask"``. With
no message argument it reads the prompt from stdin to EOF. Events and failure classes:
``supervisor.agents.opencode``.

Environment defaults (the agent's ``env`` wins): ``OPENCODE_PRINT_LOGS=1`` and
``OPENCODE_LOG_LEVEL=ERROR`` (one stderr line per failed API try: the only sign of its retries),
``OPENCODE_DISABLE_AUTOUPDATE=1`` (a night must not update its CLI).

Plan keys: ``base_url`` -> a provider of pagent's (``@ai-sdk/openai-compatible``, Chat
Completions at ``base_url``, the key from ``OPENAI_API_KEY`` as ``{env:OPENAI_API_KEY}``) with
``model`` (required then) as its one model, used for the title too. Without ``base_url``,
``model = "provider/model"`` -> ``--model``. The config goes into ``opencode.json`` in the
attempt's own directory, named by ``OPENCODE_CONFIG``, which opencode merges over the user's
config: nothing is written to the user's home.

Bounds: opencode's retry count is built in (5 retries, 2 s doubling to 30 s: about 80 s for a
constant 500) and cannot be changed, so the parser stops opencode at its third failed try in a
row (``supervisor.agents.opencode``). The provider's ``headerTimeout`` (default here 120 s;
opencode: 300 s) and ``chunkTimeout`` (300 s, opencode's own) end a silent try; ``idle_timeout``
sets both. They are set for pagent's provider, or for the provider ``model`` names.

``home = "own"`` points ``XDG_CONFIG_HOME``, ``XDG_DATA_HOME``, ``XDG_CACHE_HOME`` and
``XDG_STATE_HOME`` at a directory pagent keeps for the agent (``.pagent/homes/NAME``), so its
session database and its npm cache of plugin dependencies survive between attempts (a fresh one
costs start-up time and registry traffic); ``HOME`` is left alone (the agent's git identity
lives there).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from supervisor.agents import clikind
from supervisor.agents.base import NoHeadless, Notice, Setup
from supervisor.agents.opencode import OpencodeParser
from supervisor.plan.catalog import AgentProblem
from supervisor.plan.model import AgentSpec, TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import AGENT_HOME, ATTEMPT_DIR, AttemptKey, Executor

COMMAND = ("opencode", "run", "--format", "json")
PROVIDER = "pagent"
API_KEY_ENV = "OPENAI_API_KEY"
HEADER_TIMEOUT_MS = 120_000
CHUNK_TIMEOUT_MS = 300_000
CONFIG = "opencode.json"  # in the attempt's own directory
ENV = MappingProxyType(
    {"OPENCODE_PRINT_LOGS": "1", "OPENCODE_LOG_LEVEL": "ERROR", "OPENCODE_DISABLE_AUTOUPDATE": "1"}
)
_XDG = {
    "XDG_CONFIG_HOME": "config",
    "XDG_DATA_HOME": "data",
    "XDG_CACHE_HOME": "cache",
    "XDG_STATE_HOME": "state",
}


class OpencodeKind(NoHeadless):
    """opencode as an agent kind (``kind = "opencode"``); see the module docstring. None of the
    headless hooks yet (``NoHeadless``): no session id of pagent's, no resume, no structured result."""

    name = "opencode"
    # Its XDG directories (with home = "own": the kept directory) and npm's cache for plugins.
    state_paths = (
        "${XDG_CONFIG_HOME:-~/.config}/opencode/",
        "${XDG_DATA_HOME:-~/.local/share}/opencode/",
        "${XDG_CACHE_HOME:-~/.cache}/opencode/",
        "${XDG_STATE_HOME:-~/.local/state}/opencode/",
        "${npm_config_cache:-~/.npm}/",
    )
    default_preflight = True
    failure_classes = frozenset(
        {
            Reason.OK,
            Reason.AUTH,
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
        """``opencode``: the CLI on PATH, ``run`` with JSON events."""
        return [AgentSpec("opencode", COMMAND, MappingProxyType({}), self.name, preflight=True)]

    def check_args(self, args: Sequence[str]) -> None:
        """Refuse an output format the kind cannot read, and interactive mode."""
        clikind.refuse_format(args, ("--format",), "json", self.name)
        if {"-i", "--interactive"} & set(args):
            raise ValueError("-i/--interactive waits for a person; the opencode kind runs headless")

    def check_agent(self, agent: AgentSpec) -> AgentProblem:
        """A ``base_url`` needs the model's name; otherwise a model is ``provider/model``."""
        if agent.base_url is not None and agent.model is None:
            return "model", 'missing: with base_url, name the model the server serves (model = "NAME")'
        if agent.base_url is None and agent.model is not None and "/" not in agent.model:
            return "model", f"expected 'provider/model' (opencode's form), got {agent.model!r}"
        return None

    def argv(self, agent: AgentSpec, settings: TaskSettings, resume: str | None) -> tuple[str, ...]:
        """The command, ``--model`` (without ``base_url``), the agent's and the task's extra args."""
        model = ["--model", agent.model] if agent.model and agent.base_url is None else []
        return (*agent.command, *model, *agent.extra_args, *settings.extra_args)

    def setup(self, agent: AgentSpec, settings: TaskSettings) -> Setup:
        """The environment defaults, ``opencode.json`` if pagent has something to configure, and
        with ``home = "own"`` the XDG directories in the agent's kept directory."""
        env = dict(ENV)
        files = {}
        if config := _config(agent):
            files[CONFIG] = (json.dumps(config, indent=2) + "\n").encode()
            env["OPENCODE_CONFIG"] = f"{ATTEMPT_DIR}/{CONFIG}"
        if clikind.home_of(agent) == "user":
            return Setup(env=env, files=files)
        env.update({name: f"{AGENT_HOME}/{sub}" for name, sub in _XDG.items()})
        env["npm_config_cache"] = f"{AGENT_HOME}/npm"  # its plugin lookups use npm's cache in $HOME
        return Setup(env=env, files=files, home=agent.name)

    def parser(self) -> OpencodeParser:
        return OpencodeParser(retries=clikind.CLI_RETRIES)

    async def preflight(
        self, agent: AgentSpec, executor: Executor, key: AttemptKey, *, max_wait: float, notice: Notice
    ) -> str:
        """``opencode --version``, then a one-line prompt, stopped at opencode's first retry."""
        return await clikind.preflight(
            agent,
            executor,
            key,
            argv=self.argv(agent, TaskSettings(), None),
            setup=self.setup(agent, TaskSettings()),
            new_parser=lambda: OpencodeParser(retries=clikind.PREFLIGHT_RETRIES),
            max_wait=max_wait,
            notice=notice,
        )


def _config(agent: AgentSpec) -> dict[str, Any]:
    """pagent's additions to opencode's config: a provider for ``base_url``, or the timeouts of
    the provider ``model`` names; empty when there is nothing to add."""
    header = HEADER_TIMEOUT_MS if agent.idle_timeout is None else round(agent.idle_timeout * 1000)
    chunk = CHUNK_TIMEOUT_MS if agent.idle_timeout is None else round(agent.idle_timeout * 1000)
    timeouts = {"headerTimeout": header, "chunkTimeout": chunk}
    if agent.base_url is not None and agent.model is not None:
        provider = {
            "npm": "@ai-sdk/openai-compatible",
            "name": PROVIDER,
            "options": {"baseURL": agent.base_url, "apiKey": f"{{env:{API_KEY_ENV}}}", **timeouts},
            "models": {agent.model: {"name": agent.model, "tool_call": True}},
        }
        model = f"{PROVIDER}/{agent.model}"
        return {"provider": {PROVIDER: provider}, "model": model, "small_model": model}
    if agent.model is not None:
        return {"provider": {agent.model.split("/", 1)[0]: {"options": timeouts}}}
    return {}
