"""The plan file's shape as msgspec structs: types, ranges and unknown keys, nothing more.

msgspec checks every key against these declarations and names the offending key path
(``$.waves[0].tasks[2].retries``), which ``plan.py`` turns into the user's one-line error.
Cross-field rules (unique ids, known agents, prompt files...) live in ``plan.py``.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
Duration = str | int | float
Size = str | int
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]


class _Strict(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """Base of every table: an unknown key is an error, never silently ignored."""


class SettingsTable(_Strict, frozen=True):
    """``[defaults]``, and the overridable part of every task: ``None`` means "not set here"."""

    agent: NonEmptyStr | None = None
    retries: NonNegInt | None = None
    retry_delay: Duration | None = None
    timeout: Duration | None = None
    stall_timeout: Duration | None = None
    kill_grace: Duration | None = None
    workdir: NonEmptyStr | None = None
    isolation: Literal["worktree", "none"] | None = None
    min_free_memory: Size | None = None
    extra_args: list[str] | None = None
    max_budget_usd: NonNegFloat | None = None
    resume_on_retry: bool | None = None
    retry_on: list[str] | None = None
    rate_limit_delay: Duration | None = None
    rate_limit_retries: NonNegInt | None = None
    max_wait: Duration | None = None
    auto_commit: bool | None = None
    verify: Annotated[list[NonEmptyStr], msgspec.Meta(min_length=1)] | None = None
    require_changes: bool | None = None
    done_marker: NonEmptyStr | None = None
    confine: bool | None = None


class TaskTable(SettingsTable, kw_only=True, frozen=True):
    """One ``[[waves.tasks]]`` entry."""

    id: str
    prompt: str | None = None
    prompt_file: NonEmptyStr | None = None
    branch: NonEmptyStr | None = None
    depends_on: list[str] = []
    stack: bool = False


class WaveTable(_Strict, frozen=True):
    """One ``[[waves]]`` entry."""

    name: NonEmptyStr | None = None
    context_file: NonEmptyStr | None = None
    tasks: list[TaskTable] = []


class AgentTable(_Strict, frozen=True):
    """One ``[agents.NAME]`` table: how to start an agent, and how to read what it prints."""

    command: Annotated[list[NonEmptyStr], msgspec.Meta(min_length=1)]
    env: dict[str, str] = {}
    kind: Literal["plain", "claude"] = "plain"
    extra_args: list[str] = []
    preflight: bool | None = None


class IntegrateTable(_Strict, frozen=True):
    """``[integrate]``: merge each wave's succeeded branches into one branch."""

    branch: NonEmptyStr


class PlanTable(_Strict, frozen=True):
    """The whole plan file."""

    name: NonEmptyStr | None = None
    repo: NonEmptyStr | None = None
    base: NonEmptyStr | None = None
    jobs: PositiveInt = 2
    worktree_root: NonEmptyStr | None = None
    max_cost_usd: NonNegFloat | None = None
    keep_runs: PositiveInt | None = None
    context_file: NonEmptyStr | None = None
    integrate: IntegrateTable | None = None
    defaults: SettingsTable = SettingsTable()
    agents: dict[str, AgentTable] = {}
    waves: list[WaveTable] = []
