"""What an agent kind is: its argv, its output parser, its preflight, its failure classes.

An ``AgentKind`` is an object in the registry (``supervisor.agents.registry``); the engine asks
the registry for a task's kind and never branches on a kind's name. A kind supplies:

- ``argv``: the command line of one attempt (the agent's command, its ``extra_args``, the
  task's, and the flags the kind derives from the task's settings, e.g. a budget or a resume);
- ``setup``: what else the attempt needs where it runs (``Setup``): environment defaults under
  the agent's own ``env`` (which always wins), config files for the attempt's own directory and
  the name of a directory kept for the agent (``supervisor.seam``: ``files``, ``home``);
- ``parser``: a fresh ``OutputParser`` per attempt, fed the agent's stdout as it arrives,
  judging the attempt at the end (the outcome comes from the agent's own structured signal
  where it has one, never from the exit code alone);
- ``preflight``: before a night, is the CLI there and does it answer;
- ``failure_classes``: the reasons it can report, all from the shared vocabulary
  (``supervisor.reasons``), which the one policy table (``supervisor.engine.policy``) maps to
  what happens next;
- ``check_args``: arguments that cannot work, refused when the plan is loaded;
- ``check_agent``: the agent's kind-specific keys (``base_url``, ``model``, ``home``,
  ``idle_timeout``), checked when the plan is loaded;
- ``state_paths``: what its agents write besides their workspace (their login, sessions,
  settings), which a sandboxed attempt may still write -- in ``supervisor.seam.Confinement``'s
  notation (``~/.claude/`` a directory, ``~/.claude.json`` a file if present,
  ``${CODEX_HOME:-~/.codex}/``), expanded where the attempt runs.
- the headless features, each ``None`` where a kind has none (``NoHeadless`` gives a kind the
  defaults): ``session_args`` (the session id pagent chose before the launch, continuing an
  earlier session), ``resumes`` (whether ``argv`` can continue an earlier session at all) and
  ``structured_output_args`` (a result following the task's ``result_schema``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

from supervisor.plan.catalog import AgentProblem, Catalog, KindRules
from supervisor.plan.model import AgentSpec, TaskSettings
from supervisor.reasons import Reason, exit_reason, signal_reason
from supervisor.seam import AttemptKey, Executor, Exit

Notice = Callable[[str], None]


@dataclass(frozen=True)
class Outcome:
    """How an attempt went according to its agent kind, plus whatever it measured.

    ``metrics`` keys with a column of their own in the state: ``session_id``, ``turns``,
    ``cost_usd``, ``api_ms``, ``tokens_in``, ``tokens_out``; keys the engine reads:
    ``result_text`` (the agent's final message), ``resets_at`` (epoch seconds when a usage
    limit resets); everything else is kept as the attempt's ``detail``.
    """

    succeeded: bool
    reason: str
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Waiting:
    """A silence the agent announced (the Claude CLI waiting out an API retry): the stall clock
    allows it, and an attempt stopped during it fails of ``reason`` (when set) instead of
    ``stalled`` or ``timeout``: it was waiting on something outside it, not hung."""

    seconds: float
    reason: str | None = None  # e.g. "rate-limited" for a retry after a 429 or 529


@dataclass(frozen=True)
class Setup:
    """What a kind adds to an attempt beside its argv (see ``supervisor.seam.AttemptSpec``).

    ``env``: defaults under the agent's ``env`` (the plan's values always win); values may name
    ``{attempt_dir}`` and ``{agent_home}``. ``files``: relative path -> bytes, written into the
    attempt's own directory where the agent runs. ``home``: the name of the directory kept for
    this agent across attempts (``{agent_home}``), or ``None``.
    """

    env: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)
    home: str | None = None


NO_SETUP = Setup()


class OutputParser(Protocol):
    """Reads one attempt's stdout (and stderr) as it arrives and judges the attempt at the end."""

    def feed(self, data: bytes) -> None:
        """Take a chunk of stdout (every chunk of output already counts as a sign of life)."""

    def feed_stderr(self, data: bytes) -> None:
        """Take a chunk of stderr, where some CLIs report what their stdout leaves out (API
        retries, a rejected patch); kinds that need nothing from it ignore it."""

    def outcome(self, exit: Exit) -> Outcome:
        """Judge the attempt once its process has ended with ``exit``."""

    def notices(self) -> list[str]:
        """Notable events since the last call (e.g. an API retry), each one line for the log."""

    @property
    def finished(self) -> bool:
        """True once the agent has announced its final result (the process may still run)."""

    @property
    def status(self) -> str | None:
        """A short live status for ``pagent status`` ("retrying API, 529, attempt 2/10"), or None."""

    @property
    def waiting(self) -> Waiting | None:
        """The silence the agent announced last, while no later output ended it; a new object
        for every new announcement."""


class AgentKind(Protocol):
    """One kind of agent CLI; see the module docstring."""

    @property
    def name(self) -> str:
        """The kind's name in plans (``kind = "claude"``)."""

    @property
    def default_preflight(self) -> bool:
        """Whether agents of this kind are checked before a run unless the plan says."""

    @property
    def failure_classes(self) -> frozenset[Reason]:
        """The reasons this kind's parser can report."""

    @property
    def state_paths(self) -> tuple[str, ...]:
        """What the kind's agents write besides their workspace (see the module docstring)."""

    def builtin_agents(self) -> Sequence[AgentSpec]:
        """Agents of this kind every plan knows without declaring them."""

    def check_args(self, args: Sequence[str]) -> None:
        """Raise ``ValueError`` (one line) for arguments that cannot work."""

    def check_agent(self, agent: AgentSpec) -> AgentProblem:
        """The agent key (``base_url``, ``model``, ``home``, ``idle_timeout``) this kind cannot
        use as given and why, or ``None``."""

    def argv(self, agent: AgentSpec, settings: TaskSettings, resume: str | None) -> tuple[str, ...]:
        """The argv of one attempt; ``resume`` is the session to continue, if any."""

    def setup(self, agent: AgentSpec, settings: TaskSettings) -> Setup:
        """The environment defaults, files and kept directory one attempt needs."""

    def parser(self) -> OutputParser:
        """A fresh parser for one attempt."""

    # -- the headless features (``NoHeadless``: none of them) --------------------------------------

    @property
    def resumes(self) -> bool:
        """Whether this kind can continue an earlier attempt's session (``argv``'s ``resume``, or
        ``session_args``): a person's answer then becomes the next attempt's whole prompt."""

    def session_args(self, session_id: str, resume: str | None) -> tuple[str, ...] | None:
        """Arguments (appended to ``argv``) that make ``session_id`` -- a UUID pagent chose and
        recorded before the launch -- the attempt's session, continuing session ``resume`` if
        given; ``None`` if the agent cannot be told its session id (``argv`` then resumes)."""

    def structured_output_args(self, schema: str) -> tuple[str, ...] | None:
        """Arguments (appended to ``argv``) that make the agent end with a result following the
        JSON Schema ``schema`` (JSON text), reported as ``structured_output`` in the outcome's
        metrics; ``None`` if the kind cannot (a plan giving it ``result_schema`` is refused)."""

    async def preflight(
        self, agent: AgentSpec, executor: Executor, key: AttemptKey, *, max_wait: float, notice: Notice
    ) -> str:
        """Check ``agent`` works; return its version or raise ``PreflightError``. ``notice``
        takes one line for the user (a transient failure retried); a usage limit that resets
        within ``max_wait`` seconds is not a failure."""


class NoHeadless:
    """The headless hooks of a kind that has none of the features (see ``AgentKind``)."""

    resumes = False

    def session_args(self, session_id: str, resume: str | None) -> tuple[str, ...] | None:
        return None

    def structured_output_args(self, schema: str) -> tuple[str, ...] | None:
        return None


def outcome_from_exit(exit: Exit) -> Outcome:
    """The plain rule: exit code 0 succeeded, anything else failed with its code or signal."""
    if exit.signal_name is not None:
        return Outcome(succeeded=False, reason=signal_reason(exit.signal_name))
    code = exit.code if exit.code is not None else -1
    reason = exit_reason(code)
    return Outcome(succeeded=reason == Reason.OK, reason=reason)


def state_paths_of(kind: AgentKind) -> tuple[str, ...]:
    """``kind.state_paths``; none for a kind written before there was such an attribute."""
    return tuple(getattr(kind, "state_paths", ()))


def standard_argv(agent: AgentSpec, settings: TaskSettings) -> list[str]:
    """The agent's command, then its ``extra_args``, then the task's: what every kind starts from."""
    return [*agent.command, *agent.extra_args, *settings.extra_args]


class Kinds:
    """The registry: agent kinds by name, and the built-in agents they bring."""

    def __init__(self, kinds: Iterable[AgentKind], agents: Iterable[AgentSpec] = ()) -> None:
        self._kinds: Mapping[str, AgentKind] = MappingProxyType({kind.name: kind for kind in kinds})
        builtins = {spec.name: spec for kind in self._kinds.values() for spec in kind.builtin_agents()}
        builtins.update((spec.name, spec) for spec in agents)
        self._agents = MappingProxyType(builtins)

    def __getitem__(self, name: str) -> AgentKind:
        """The kind called ``name``; ``KeyError`` if there is none (a loaded plan names only
        known kinds)."""
        return self._kinds[name]

    def __contains__(self, name: object) -> bool:
        return name in self._kinds

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def catalog(self) -> Catalog:
        """What the plan loader needs to know of the kinds (``supervisor.plan.catalog``)."""
        rules = {
            name: KindRules(
                default_preflight=kind.default_preflight,
                check_args=kind.check_args,
                check_agent=kind.check_agent,
                default_command=next(
                    (spec.command for spec in kind.builtin_agents() if spec.name == name), None
                ),
                state_paths=state_paths_of(kind),
                structured_output=kind.structured_output_args("{}") is not None,
            )
            for name, kind in self._kinds.items()
        }
        return Catalog(kinds=MappingProxyType(rules), agents=self._agents)
