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


@dataclass(frozen=True)
class KindRules:
    """The load-time rules of one agent kind."""

    default_preflight: bool
    check_args: Callable[[Sequence[str]], None]  # ValueError (one line) for arguments that cannot work


@dataclass(frozen=True)
class Catalog:
    """The agent kinds a plan may name, and the agents every plan knows."""

    kinds: Mapping[str, KindRules]
    agents: Mapping[str, AgentSpec]
