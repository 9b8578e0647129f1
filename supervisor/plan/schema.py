"""The plan file's shape as msgspec structs: types, ranges and unknown keys, nothing more.

msgspec checks every key against these declarations and names the offending key path
(``$.waves[0].tasks[2].retries``); ``convert`` turns that into the user's one-line message.
Cross-field rules (unique ids, known agents, prompt files...) live in ``load``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal

import msgspec

NonNegInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegFloat = Annotated[float, msgspec.Meta(ge=0)]
Duration = str | int | float
Size = str | int
NonEmptyStr = Annotated[str, msgspec.Meta(min_length=1)]
Argv = Annotated[list[NonEmptyStr], msgspec.Meta(min_length=1)]


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
    workspace: Literal["worktree", "clone"] | None = None
    sandbox: bool | Literal["auto"] | None = None
    sandbox_network: bool | None = None
    sandbox_writable: list[NonEmptyStr] | None = None
    # The workspace's hooks and copies, structured results, Claude Code's headless settings
    # (README: "Setup hooks and copies", "Structured results", "Running Claude Code overnight").
    setup: list[Argv] | None = None
    before_attempt: list[Argv] | None = None
    teardown: list[Argv] | None = None
    setup_timeout: Duration | None = None
    copy: list[NonEmptyStr] | None = None
    result_schema: NonEmptyStr | dict[str, Any] | None = None  # a file (relative to the plan) or a table
    fallback_model: NonEmptyStr | None = None
    setting_sources: list[Literal["user", "project", "local"]] | None = None
    strict_mcp_config: bool | None = None
    mcp: Literal["optional", "required"] | None = None


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

    # Optional for a kind with a built-in agent (its command is the default); required for plain.
    command: Annotated[list[NonEmptyStr], msgspec.Meta(min_length=1)] | None = None
    env: dict[str, str] = {}
    kind: NonEmptyStr = "plain"  # checked against the registry's kinds by the loader
    extra_args: list[str] = []
    preflight: bool | None = None
    # Kind-specific (codex, gemini, opencode); the kind refuses what it cannot use.
    base_url: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")] | None = None
    model: NonEmptyStr | None = None
    home: Literal["user", "own"] | None = None
    idle_timeout: Duration | None = None
    account: NonEmptyStr | None = None  # agents naming one account share one rate-limit gate


class IntegrateTable(_Strict, frozen=True):
    """``[integrate]``: merge each wave's succeeded branches into one branch."""

    branch: NonEmptyStr


class NotifyTable(_Strict, frozen=True):
    """``[notify]``: where notifications go and which events send one."""

    urls: list[NonEmptyStr] = []
    command: Annotated[list[NonEmptyStr], msgspec.Meta(min_length=1)] | None = None
    on: list[str] | None = None
    timeout: Duration = 10
    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 2


class PublishTable(_Strict, frozen=True):
    """``[publish]``: push succeeded branches to a remote, optionally open pull requests."""

    remote: NonEmptyStr = "origin"
    pull_request: Literal["draft", "ready", "none"] = "none"
    pull_request_for: Literal["tasks", "integration"] = "tasks"
    base: NonEmptyStr | None = None
    auto: bool = True
    command: Annotated[list[NonEmptyStr], msgspec.Meta(min_length=1)] | None = None
    list_command: list[NonEmptyStr] | None = None  # [] = do not ask; rely on the run's record
    timeout: Duration = "2m"


class ExecutorTable(_Strict, frozen=True):
    """``[executor]``: where attempts run (this machine, or a Ray cluster)."""

    kind: Literal["local", "ray"] = "local"
    address: Annotated[str, msgspec.Meta(pattern=r"^https?://[^\s/]+")] | None = None
    resources: dict[str, Annotated[float, msgspec.Meta(gt=0)]] | None = None
    remote: NonEmptyStr | None = None
    python: NonEmptyStr | None = None
    start_timeout: Duration | None = None


class PlanTable(_Strict, frozen=True):
    """The whole plan file."""

    name: NonEmptyStr | None = None
    repo: NonEmptyStr | None = None
    base: NonEmptyStr | None = None
    jobs: PositiveInt = 2
    worktree_root: NonEmptyStr | None = None
    max_cost_usd: NonNegFloat | None = None
    keep_runs: PositiveInt | None = None
    order: Literal["longest-first", "plan"] = "longest-first"  # how a wave's tasks are offered slots
    context_file: NonEmptyStr | None = None
    integrate: IntegrateTable | None = None
    notify: NotifyTable | None = None
    publish: PublishTable | None = None
    executor: ExecutorTable | None = None
    defaults: SettingsTable = SettingsTable()
    agents: dict[str, AgentTable] = {}
    waves: list[WaveTable] = []


_MSGSPEC_ERROR = re.compile(r"^(?P<msg>.*) - at `\$(?P<path>.*)`$", re.DOTALL)
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def convert(raw: Mapping[str, Any]) -> PlanTable:
    """Check the parsed TOML against the declarations; ``ValueError`` with one line naming the
    key path ("waves[0].tasks[2].retries: expected `int` >= 0, got -1") on the first problem."""
    try:
        return msgspec.convert(raw, type=PlanTable)
    except msgspec.ValidationError as exc:
        raise ValueError(_describe(exc, raw)) from None


def _describe(exc: msgspec.ValidationError, raw: Mapping[str, Any]) -> str:
    """Turn msgspec's "<msg> - at `$.a[0].b`" into "a[0].b: <msg>, got <value>"."""
    text = str(exc)
    match = _MSGSPEC_ERROR.match(text)
    # msgspec gives no path for the top-level table (an unknown top-level key).
    msg, path = (match["msg"], match["path"].lstrip(".")) if match else (text, "")
    path = _name_agent(raw, path)
    if unknown := re.match(r"Object contains unknown field `(.*)`$", msg, re.DOTALL):
        key = f"{path}.{toml_key(unknown[1])}" if path else toml_key(unknown[1])
        return f"{key}: unknown key"
    if missing := re.match(r"Object missing required field `(.*)`", msg):
        return f"{path or 'plan'}: missing required key {missing[1]!r}"
    msg = msg.replace(" | null", "").replace("null | ", "")
    msg = msg[0].lower() + msg[1:]
    if "got" not in msg and not msg.startswith("invalid enum value"):
        found, value = _lookup(raw, path)
        if found:
            msg = f"{msg}, got {value!r}"
    return f"{path}: {msg}"


def toml_key(name: str) -> str:
    """A table key as it would be written in TOML: bare if it can be, else quoted (one line)."""
    return name if _BARE_KEY.match(name) else json.dumps(name)


def _name_agent(raw: Mapping[str, Any], path: str) -> str:
    """Put back the agent name (and env key) that msgspec writes as ``[...]`` in a key path.

    msgspec checks ``[agents.*]`` in file order and stops at the first error, so the agent it
    complains about is the first one that does not convert on its own.
    """
    if not path.startswith("agents[...]"):
        return path
    agents = raw.get("agents")
    if not isinstance(agents, Mapping):
        return path
    failing = [(name, value) for name, value in agents.items() if not _converts(value, AgentTable)]
    if not failing:
        return path
    name, value = failing[0]
    rest = path.removeprefix("agents[...]")
    if rest.startswith(".env[...]") and isinstance(value, Mapping) and isinstance(value.get("env"), Mapping):
        bad = [k for k, v in value["env"].items() if not isinstance(v, str)]
        if bad:
            rest = f".env.{toml_key(bad[0])}" + rest.removeprefix(".env[...]")
    return f"agents.{toml_key(name)}{rest}"


def _converts(value: Any, type_: type[Any]) -> bool:
    """Whether ``value`` passes msgspec's checks for ``type_``."""
    try:
        msgspec.convert(value, type=type_)
    except msgspec.ValidationError:
        return False
    return True


def _lookup(raw: Any, path: str) -> tuple[bool, Any]:
    """Find the value at a msgspec key path like ``waves[0].tasks[1].retries`` in the raw TOML."""
    value = raw
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        try:
            value = value[int(part[1:-1])] if part.startswith("[") else value[part]
        except (KeyError, IndexError, TypeError, ValueError):
            return False, None
    return True, value
