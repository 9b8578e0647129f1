"""The ``plain`` agent kind: any output is liveness, the exit code is the outcome."""

from __future__ import annotations

from collections.abc import Sequence

from supervisor.agents.base import (
    NO_SETUP,
    NoHeadless,
    Notice,
    Outcome,
    Setup,
    outcome_from_exit,
    standard_argv,
)
from supervisor.plan.catalog import AgentProblem, no_agent_keys
from supervisor.plan.model import AgentSpec, TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import AttemptKey, Executor, Exit


class PlainParser:
    """Reads nothing: exit code 0 succeeded, anything else failed with its code or signal."""

    finished = False
    status = None
    waiting = None

    def feed(self, data: bytes) -> None:
        pass

    def feed_stderr(self, data: bytes) -> None:
        pass

    def notices(self) -> list[str]:
        return []

    def outcome(self, exit: Exit) -> Outcome:
        return outcome_from_exit(exit)


class PlainKind(NoHeadless):
    """Any command as an agent (``kind = "plain"``, the default for ``[agents.NAME]``); it has
    none of the headless features."""

    name = "plain"
    default_preflight = False
    failure_classes = frozenset({Reason.OK, Reason.EXIT, Reason.SIGNAL})
    state_paths: tuple[str, ...] = ()  # any command: what it writes is the plan's to say

    def builtin_agents(self) -> Sequence[AgentSpec]:
        return ()

    def check_args(self, args: Sequence[str]) -> None:
        pass  # a plain command may take any argument

    def check_agent(self, agent: AgentSpec) -> AgentProblem:
        return no_agent_keys(agent)

    def argv(self, agent: AgentSpec, settings: TaskSettings, resume: str | None) -> tuple[str, ...]:
        return tuple(standard_argv(agent, settings))

    def setup(self, agent: AgentSpec, settings: TaskSettings) -> Setup:
        return NO_SETUP

    def parser(self) -> PlainParser:
        return PlainParser()

    async def preflight(
        self, agent: AgentSpec, executor: Executor, key: AttemptKey, *, max_wait: float, notice: Notice
    ) -> str:
        """``--version``, then the one-line prompt: it must exit 0 (``preflight = true``)."""
        from supervisor.agents.preflight import run_preflight  # anyio: not needed to load a plan

        return await run_preflight(
            agent, executor, key, self.parser(), max_wait=max_wait, new_parser=self.parser, notice=notice
        )
