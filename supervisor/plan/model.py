"""The plan as frozen dataclasses: agents, task settings, tasks, waves, the hand-off settings
(``[notify]``, ``[publish]``), where attempts run (``[executor]``) and where a plan lives.

Nothing here reads a file or validates anything: ``supervisor.plan.load`` builds these from the
TOML after checking every key, so code that holds a ``Plan`` can trust every field.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Literal

from supervisor.reasons import Reason

Isolation = Literal["worktree", "none"]
Home = Literal["user", "own"]
WorkspaceKind = Literal["worktree", "clone"]
Sandbox = bool | Literal["auto"]
Order = Literal["longest-first", "plan"]  # how a wave's tasks are offered slots (engine.order)
McpMode = Literal["optional", "required"]

# Failure classes that are not retried unless a task lists them in ``retry_on``: retrying
# blindly would end the same way (work off its branch or a rewritten history is the agent's
# doing; a retry would start from that very state).
RETRYABLE_ON_REQUEST = frozenset(
    {Reason.MAX_TURNS, Reason.BUDGET, Reason.NEEDS_INPUT, Reason.NOT_ON_BRANCH, Reason.HISTORY_REWRITTEN}
)


@dataclass(frozen=True)
class AgentSpec:
    """How to start one agent: argv (no shell, ever), extra environment and output kind."""

    name: str
    command: tuple[str, ...]
    env: Mapping[str, str]
    kind: str  # a kind of the registry (supervisor.agents), checked when the plan is loaded
    extra_args: tuple[str, ...] = ()
    preflight: bool = False  # check the agent works before a run (Claude agents: on by default)
    # What some kinds turn into their CLI's own config (checked by the kind when the plan loads):
    base_url: str | None = None  # the model API to use instead of the vendor's
    model: str | None = None
    home: Home | None = None  # the CLI's state and login: the user's or its own; None: kind default
    idle_timeout: float | None = None  # seconds the CLI waits for the API's next bytes
    account: str | None = None  # the API account it uses: agents of one account share a rate-limit gate

    @property
    def gate(self) -> str:
        """The name of its rate-limit gate ("account NAME", else "agent NAME"): agents that name
        one ``account`` share a gate, every other agent has its own."""
        return f"account {self.account}" if self.account is not None else f"agent {self.name}"


@dataclass(frozen=True)
class TaskSettings:
    """Everything ``[defaults]`` sets and a task may override, with units already parsed."""

    agent: str = "claude"
    retries: int = 2
    retry_delay: float = 30.0
    timeout: float = 45 * 60.0
    stall_timeout: float = 10 * 60.0
    kill_grace: float = 10.0
    workdir: str | None = None
    isolation: Isolation = "worktree"
    min_free_memory: int = 512 * 1024**2
    extra_args: tuple[str, ...] = ()
    max_budget_usd: float | None = None
    resume_on_retry: bool = False
    retry_on: tuple[str, ...] = ()
    rate_limit_delay: float = 5 * 60.0
    rate_limit_retries: int = 5
    max_wait: float = 5 * 3600.0
    auto_commit: bool = True
    verify: tuple[str, ...] = ()
    require_changes: bool = False
    done_marker: str | None = None
    confine: bool = False
    # Where not set: "clone" when the sandbox may be on (a worktree writes the main
    # repository), else "worktree" (the loader decides).
    workspace: WorkspaceKind = "worktree"
    sandbox: Sandbox = False  # "auto": on where the executor can confine attempts, else off
    sandbox_network: bool = True
    # Paths the sandboxed agent may write besides its workspace and its kind's state ("!PATH"
    # takes one of the kind's state paths away); see ``supervisor.seam.Confinement``.
    sandbox_writable: tuple[str, ...] = ()
    # Hooks run in the workspace (argv each): once when it is created, before every attempt,
    # before ``pagent clean`` removes it; each bounded by ``setup_timeout``.
    setup: tuple[tuple[str, ...], ...] = ()
    before_attempt: tuple[tuple[str, ...], ...] = ()
    teardown: tuple[tuple[str, ...], ...] = ()
    setup_timeout: float = 10 * 60.0
    copy: tuple[str, ...] = ()  # paths of the main worktree copied into each new workspace
    result_schema: str | None = None  # the JSON Schema of the agent's result, as JSON text
    fallback_model: str | None = None
    setting_sources: tuple[str, ...] | None = None
    strict_mcp_config: bool = False
    mcp: McpMode = "optional"  # "required": an MCP server that failed to start fails the attempt


@dataclass(frozen=True)
class Task:
    """One task of the plan, its prompt read and its settings merged over the defaults."""

    id: str
    wave: int
    wave_name: str
    prompt: str  # the task's own prompt, a template (see supervisor.prompts)
    branch: str | None
    settings: TaskSettings
    context: str = ""  # the plan's and the wave's context files, verbatim
    depends_on: tuple[str, ...] = ()
    stack: bool = False  # start from the (single) dependency's branch instead of base


@dataclass(frozen=True)
class Wave:
    """Tasks that may run side by side; the next wave starts when all of these have ended."""

    index: int
    name: str
    tasks: tuple[Task, ...]


class NotifyEvent(enum.StrEnum):
    """What a notification is about; ``[notify] on`` names the configurable ones."""

    RUN_FINISHED = "run-finished"
    NEEDS_INPUT = "needs-input"
    STOPPED_EARLY = "stopped-early"
    TASK_FAILED = "task-failed"
    TEST = "test"  # `pagent notify --test`: always sent, never configured


CONFIGURABLE_EVENTS = (
    NotifyEvent.RUN_FINISHED,
    NotifyEvent.NEEDS_INPUT,
    NotifyEvent.STOPPED_EARLY,
    NotifyEvent.TASK_FAILED,
)
DEFAULT_EVENTS = frozenset({NotifyEvent.RUN_FINISHED, NotifyEvent.NEEDS_INPUT, NotifyEvent.STOPPED_EARLY})


@dataclass(frozen=True)
class NotifyConfig:
    """``[notify]``: apprise URLs, a command (argv), the events that notify, the bound per target."""

    urls: tuple[str, ...] = ()  # secrets inside: never print one unmasked
    command: tuple[str, ...] | None = None
    events: frozenset[NotifyEvent] = DEFAULT_EVENTS
    timeout: float = 10.0
    retries: int = 2

    @property
    def enabled(self) -> bool:
        """Whether there is anywhere to send a notification."""
        return bool(self.urls or self.command)

    def wants(self, event: NotifyEvent) -> bool:
        """Whether ``event`` sends a notification (a test message always does)."""
        return self.enabled and (event is NotifyEvent.TEST or event in self.events)


PullRequestMode = Literal["draft", "ready", "none"]
PullRequestFor = Literal["tasks", "integration"]

# The GitHub CLI (gh >= 2.4: every flag used here is in its 2.4.0 manual and in today's).
# --head skips gh's interactive push/fork step; --body-file keeps the body out of argv limits.
DRAFT_COMMAND = (
    "gh", "pr", "create", "--draft", "--head", "{branch}", "--base", "{base}",
    "--title", "{title}", "--body-file", "{body_file}",
)  # fmt: skip
READY_COMMAND = tuple(arg for arg in DRAFT_COMMAND if arg != "--draft")
# --state all: a pull request someone closed is an answer too; never open a second one.
LIST_COMMAND = ("gh", "pr", "list", "--head", "{branch}", "--state", "all", "--json", "url")


@dataclass(frozen=True)
class PublishConfig:
    """``[publish]``; ``remote`` is ``None`` when the plan publishes nothing."""

    remote: str | None = None
    pull_request: PullRequestMode = "none"
    pull_request_for: PullRequestFor = "tasks"
    base: str | None = None  # the branch pull requests go into; None: see the README
    auto: bool = True  # publish during the run; False: only ``pagent publish`` does
    command: tuple[str, ...] = DRAFT_COMMAND
    list_command: tuple[str, ...] = LIST_COMMAND  # empty: do not ask, trust the record
    timeout: float = 120.0

    @property
    def enabled(self) -> bool:
        """Whether branches are pushed at all."""
        return self.remote is not None

    @property
    def pull_requests(self) -> bool:
        """Whether pull requests are opened."""
        return self.enabled and self.pull_request != "none"


ExecutorKind = Literal["local", "ray"]


@dataclass(frozen=True)
class ExecutorConfig:
    """``[executor]``: where attempts run. ``local`` (the default): this machine; ``ray``: the
    Ray cluster at ``address`` (``None``: ``$RAY_ADDRESS``), each attempt a job needing
    ``resources``, its commits travelling through the git ``remote`` (a remote's name in the
    repository, or a URL or path every node can reach)."""

    kind: ExecutorKind = "local"
    address: str | None = None
    resources: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({"agent_slot": 1.0}))
    remote: str = "origin"
    python: str = "python3"  # the Python on every node that has pagent installed
    start_timeout: float = 120.0  # a job not started this long after its submit runs nothing


@dataclass(frozen=True)
class PlanFile:
    """Where a plan's runs live, known from the plan file's path alone.

    Read-only commands (status, logs, runs, report) need no more, so they work even while the
    plan file is being edited into something invalid.

    A plan is its file, not a spelling of it: ``path`` is the real path (symlinks and ``..``
    resolved, whatever path it was given), so a symlink to the plan, ``sub/../plan.toml`` or a
    symlinked directory name the same state, lock, uid and runs as the file itself.
    """

    path: Path  # absolute and real (resolved on construction)

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(os.path.realpath(self.path)))

    @property
    def plan_dir(self) -> Path:
        """The directory holding the plan file; relative paths in the plan are relative to it."""
        return self.path.parent

    @property
    def state_dir(self) -> Path:
        """Where runs, logs and the lock live: ``.pagent/`` beside the plan file."""
        return self.plan_dir / ".pagent"

    @property
    def key(self) -> str:
        """The name runs of this plan are filed under in its state database: the (real) file's
        name, as in every earlier version, so existing ``state.db`` files keep their runs."""
        return self.path.name

    @functools.cached_property  # part of every attempt's cookie: hashed once
    def uid(self) -> str:
        """A short id of this plan file (by its real path), unique on this machine."""
        return hashlib.sha1(str(self.path).encode(), usedforsecurity=False).hexdigest()[:12]


@dataclass(frozen=True)
class Plan(PlanFile):
    """A fully validated plan. Paths are absolute; ``repo`` is ``None`` for "the repo holding the plan"."""

    name: str
    repo: Path | None
    base: str | None
    jobs: int
    worktree_root: Path | None
    max_cost_usd: float | None
    keep_runs: int | None
    integrate_branch: str | None
    agents: Mapping[str, AgentSpec]
    waves: tuple[Wave, ...]
    notify: NotifyConfig = NotifyConfig()
    publish: PublishConfig = PublishConfig()
    order: Order = "longest-first"
    executor: ExecutorConfig = ExecutorConfig()

    @property
    def tasks(self) -> tuple[Task, ...]:
        """Every task, in wave order."""
        return tuple(task for wave in self.waves for task in wave.tasks)

    @functools.cached_property
    def _by_id(self) -> dict[str, Task]:
        # Made once per plan (a frozen dataclass's fields never change): the runner asks for
        # every task of a 1000-task wave, which a search through all of them made quadratic.
        return {task.id: task for wave in self.waves for task in wave.tasks}

    def task(self, task_id: str) -> Task:
        """The task called ``task_id``; ``KeyError`` if there is none."""
        return self._by_id[task_id]
