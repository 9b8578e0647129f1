"""The ``gemini`` agent kind: Google Gemini CLI headless (``--output-format stream-json``), 0.61.

The built-in agent runs ``gemini --output-format stream-json --yolo --skip-trust``: ``--yolo``
registers the edit tools and approves every call (without it or ``--approval-mode auto_edit``
``write_file`` does not exist and the CLI still reports success: ``tool-failed``),
``--skip-trust`` lets it work in a folder it has not been told to trust (else exit 55). With
stdin not a terminal and no ``-p`` it reads the prompt from stdin to EOF. Events and failure
classes: ``supervisor.agents.gemini``.

Plan keys: ``model`` -> ``-m MODEL`` (without it Gemini first asks a router model). ``base_url``
-> ``GOOGLE_GEMINI_BASE_URL``, the key from ``GEMINI_API_KEY``. Gemini reads its settings only
from files (the system's must belong to root, the workspace's would be committed), so its bound
``general.maxAttempts = 3`` (Gemini: 10, about 4 minutes for a constant 500; with 3 about 16 s)
goes into a home of pagent's: ``home = "own"`` sets ``GEMINI_CLI_HOME`` (Gemini's relocation of
``~/.gemini``, which leaves ``HOME`` alone) to ``gemini/`` in the attempt's own directory, fresh
each attempt, with ``.gemini/settings.json``; with a ``base_url`` it also selects API-key auth
(``GOOGLE_GEMINI_BASE_URL`` alone switches to "gateway" auth, which headless mode rejects with
exit 41), so a ``base_url`` needs ``home = "own"`` (its default). With ``home = "user"`` (the
default without ``base_url``: the user's login and settings) pagent writes nothing, and the
parser stops Gemini once it announces a third retry on stderr. ``idle_timeout`` is refused:
Gemini has no such setting (undici's 60 s header and 300 s body timeouts end each try).

Preflight: the same command with ``maxAttempts = 1`` (or, in the user's home, no retry let
through).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from types import MappingProxyType
from typing import Any

from supervisor.agents import clikind
from supervisor.agents.base import NoHeadless, Notice, Setup
from supervisor.agents.gemini import GeminiParser
from supervisor.plan.catalog import AgentProblem
from supervisor.plan.model import AgentSpec, TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import ATTEMPT_DIR, AttemptKey, Executor

COMMAND = ("gemini", "--output-format", "stream-json", "--yolo", "--skip-trust")
SETTINGS = "gemini/.gemini/settings.json"  # in the attempt's own directory


class GeminiKind(NoHeadless):
    """Gemini CLI as an agent kind (``kind = "gemini"``); see the module docstring. None of the
    headless hooks yet (``NoHeadless``): no session id of pagent's, no resume, no structured result."""

    name = "gemini"
    # GEMINI_CLI_HOME relocates ~/.gemini (with home = "own": into the attempt's own directory).
    state_paths = ("${GEMINI_CLI_HOME:-~}/.gemini/",)
    default_preflight = True
    failure_classes = frozenset(
        {
            Reason.OK,
            Reason.AUTH,
            Reason.RATE_LIMITED,
            Reason.API_ERROR,
            Reason.API_TIMEOUT,
            Reason.MAX_TURNS,
            Reason.TOOL_FAILED,
            Reason.AGENT_ERROR,
            Reason.NO_RESULT,
        }
    )

    def builtin_agents(self) -> Sequence[AgentSpec]:
        """``gemini``: the CLI on PATH, headless, stream-json events, edits approved."""
        return [AgentSpec("gemini", COMMAND, MappingProxyType({}), self.name, preflight=True)]

    def check_args(self, args: Sequence[str]) -> None:
        """Refuse an output format the kind cannot read, and interactive mode."""
        clikind.refuse_format(args, ("--output-format", "-o"), "stream-json", self.name)
        if {"-i", "--prompt-interactive"} & set(args):
            raise ValueError("-i/--prompt-interactive waits for a person; the gemini kind runs headless")

    def check_agent(self, agent: AgentSpec) -> AgentProblem:
        """No ``idle_timeout``; a ``base_url`` needs a home of pagent's."""
        if agent.idle_timeout is not None:
            return "idle_timeout", (
                "Gemini CLI has no setting for it (undici's 60 s header and 300 s body timeouts apply)"
            )
        if agent.base_url is not None and clikind.home_of(agent) == "user":
            return "home", (
                'a base_url needs home = "own": Gemini must be told to use API-key auth in its '
                "settings.json, and pagent writes none into the user's home"
            )
        return None

    def argv(self, agent: AgentSpec, settings: TaskSettings, resume: str | None) -> tuple[str, ...]:
        """The command, ``-m MODEL``, then the agent's and the task's extra args."""
        model = ["-m", agent.model] if agent.model else []
        return (*agent.command, *model, *agent.extra_args, *settings.extra_args)

    def setup(self, agent: AgentSpec, settings: TaskSettings) -> Setup:
        return _setup(agent, max_attempts=clikind.CLI_RETRIES + 1)

    def parser(self) -> GeminiParser:
        return GeminiParser(retries=clikind.CLI_RETRIES)

    async def preflight(
        self, agent: AgentSpec, executor: Executor, key: AttemptKey, *, max_wait: float, notice: Notice
    ) -> str:
        """``gemini --version``, then a one-line prompt without Gemini's own retries."""
        return await clikind.preflight(
            agent,
            executor,
            key,
            argv=self.argv(agent, TaskSettings(), None),
            setup=_setup(agent, max_attempts=clikind.PREFLIGHT_RETRIES + 1),
            new_parser=lambda: GeminiParser(retries=clikind.PREFLIGHT_RETRIES),
            max_wait=max_wait,
            notice=notice,
        )


def _setup(agent: AgentSpec, *, max_attempts: int) -> Setup:
    """``GOOGLE_GEMINI_BASE_URL``, and with ``home = "own"`` a fresh ``GEMINI_CLI_HOME`` holding
    pagent's ``settings.json``."""
    env = {} if agent.base_url is None else {"GOOGLE_GEMINI_BASE_URL": agent.base_url}
    if clikind.home_of(agent) == "user":
        return Setup(env=env)
    settings: dict[str, Any] = {"general": {"maxAttempts": max_attempts}}
    if agent.base_url is not None:
        settings["security"] = {"auth": {"selectedType": "gemini-api-key"}}
    env["GEMINI_CLI_HOME"] = f"{ATTEMPT_DIR}/gemini"
    return Setup(env=env, files={SETTINGS: (json.dumps(settings, indent=2) + "\n").encode()})
