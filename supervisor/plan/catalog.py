"""What loading a plan must know about agent kinds, handed in by whoever loads it.

The plan sits below the agent kinds: it cannot import them, yet it must check ``kind = ...``,
know the built-in agents (``claude``, ``demo``, ...) and refuse arguments a kind cannot work
with. The registry (``supervisor.agents.base.Kinds.catalog``) describes itself in these plain
terms and the CLI passes that to ``load_plan``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from supervisor.plan.model import AgentSpec

AgentProblem = tuple[str, str] | None  # (the agent key at fault, why), or None when all is well


def no_agent_keys(agent: AgentSpec) -> AgentProblem:
    """The rule of kinds that take none of the kind-specific agent keys."""
    for key in ("base_url", "model", "home", "idle_timeout"):
        if getattr(agent, key) is not None:
            return key, f"kind {agent.kind!r} does not use {key!r} (give the CLI's own flags in extra_args)"
    return None


@dataclass(frozen=True)
class KindRules:
    """The load-time rules of one agent kind."""

    default_preflight: bool
    check_args: Callable[[Sequence[str]], None]  # ValueError (one line) for arguments that cannot work
    # The kind's checks of an agent's kind-specific keys (base_url, model, home, idle_timeout).
    check_agent: Callable[[AgentSpec], AgentProblem] = no_agent_keys
    default_command: tuple[str, ...] | None = None  # the kind's built-in agent's, if it has one
    state_paths: tuple[str, ...] = ()  # what the kind's agents write besides their workspace (sandbox)
    structured_output: bool = False  # the kind can return a result for ``result_schema``


@dataclass(frozen=True)
class Catalog:
    """The agent kinds a plan may name, and the agents every plan knows."""

    kinds: Mapping[str, KindRules]
    agents: Mapping[str, AgentSpec]
