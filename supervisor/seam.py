"""The executor seam: everything the engine needs from wherever an attempt runs.

The engine never touches a process, a pid, ``/proc`` or a task's files. It asks an
``Executor`` to admit an attempt (``capacity_problem``; ``capacity_limit`` says what can never
be admitted), to prepare the task's workspace
(``prepare``), to start the agent (``start``, which yields an ``AttemptHandle``), to look at the
workspace after the attempt (``collect``), to stop what a dead supervisor left behind
(``sweep``) and to name an agent CLI's version (``version``). ``supervisor.launch.local`` runs
attempts as local processes in git worktrees; a remote engine implements the same few methods;
the tests use a scripted one.

What an executor must guarantee (the contract; the engine's promises rest on it):

- **Stop reaches the whole tree.** ``AttemptHandle.stop`` ends the agent and everything it
  started, wherever it runs (SIGTERM, ``grace``, SIGKILL, or the engine's equivalent); leaving
  ``start``'s context means nothing of the attempt runs any more. ``finish`` stops what the main
  process left behind after it ended and returns how many such processes it stopped.
- **Output as it happens.** Every byte the agent writes reaches ``on_output`` unchanged, in
  order per stream, within seconds; the engine owns logging and interpretation.
- **A durable reference.** ``AttemptHandle.ref`` is a short string the engine persists as soon
  as the attempt exists; after a crash of the supervisor, ``sweep`` with the plan's key prefix
  and the references of attempts that never ended stops whatever of them still runs.
- **The environment is an overlay.** ``AttemptSpec.env`` holds only the agent's own variables
  and pagent's ``PAGENT_*``; the executor merges it over its own base environment and adds
  ``PAGENT_COOKIE`` (its mark to find the attempt's processes), ``PAGENT_PROMPT_FILE`` and
  ``PAGENT_WORKTREE`` as they are where the agent runs.
- **The prompt reaches stdin.** ``AttemptSpec.prompt_file`` is on the supervisor's disk; the
  executor makes it the agent's standard input (read to EOF), wherever the agent runs.
- **Files are made where the agent runs.** Before the agent starts, the executor gives the
  attempt a fresh private directory of its own (mode 0700) where the agent runs and writes
  ``AttemptSpec.files`` into it (relative paths, parent directories made, mode 0600): the
  config files an agent kind needs (a Gemini ``settings.json``, an opencode config, a Codex
  output schema). In env values and argv elements, ``ATTEMPT_DIR`` (``{attempt_dir}``) is
  replaced by that directory's path; in env values, ``AGENT_HOME`` (``{agent_home}``) by a
  directory the executor keeps for ``AttemptSpec.home`` (an agent's name) across attempts and
  runs, made (0700) when first named; nothing else in the argv or the environment is
  rewritten. The attempt's directory is removed when the attempt ends (nothing in it is needed
  afterwards: the log has the output); the kept one never is.
  ``PWD`` is the agent's working directory (as a shell would set it) unless the overlay says
  otherwise.
- **Commits are home when facts are reported.** When ``collect`` returns, every commit of the
  task's branch is in the plan's repository (``WorkspaceRequest.repo``), so diff stats,
  overlaps and integration can be computed there.
- **Every commit is pinned.** Before ``collect`` returns (also when it then fails), the task
  branch's commit is pinned at ``<CollectRequest.pins>/<attempt>`` in the plan's repository, and
  the workspace's HEAD at ``.../<attempt>-head`` when it differs; ``Facts`` say whether HEAD is on
  the branch and whether the branch still descends from its start. Nothing the executor does to
  the workspace commits anywhere but on the task's branch in the task's own workspace.
- **Copies stay in the main worktree's bounds.** A new workspace gets ``WorkspaceRequest.copy``
  and the git-ignored files the repository's ``.worktreeinclude`` names, copied from the main
  worktree to the same paths (never through a symlink that leads out of it, never over a file
  the workspace already has); ``Workspace.copied`` lists them, and ``collect`` never commits
  them nor counts them as uncommitted work.
- **Workspace calls are interruptible.** Cancelling ``prepare``, ``begin`` or ``collect`` stops
  what they run (git and its children) at once; a reserved branch is used only at the commit
  pagent recorded for it (``WorkspaceRequest.expect``).
- **Exit says OOM.** ``Exit.oom`` is true when the executor knows the main process was killed
  by the out-of-memory killer.
- **Told in advance, for work out of reach.** ``AttemptSpec.steps`` carries what the engine
  will later ask of the attempt's workspace (the done marker, auto-commit) and the times of its
  stop and watch, so that an executor whose workspace is out of the supervisor's reach once
  the attempt ends (a remote node) can run those steps there first; ``AttemptSpec.verify``
  marks the ``start`` that runs the task's ``verify`` in the workspace the attempt left. A
  ``Sample`` with ``starting`` says the agent itself has not started yet (the executor is
  still getting it a place to run): that silence is not a stall.
- **Confinement holds where it runs.** An ``AttemptSpec`` (and a ``CollectRequest``) with a
  ``Confinement`` runs, with everything it starts, where it can write only its workspace and
  the paths the confinement names, with the plan's repository read-only (and no network when
  ``network`` is false); an executor that cannot do this says why in ``confinement_problem``
  and is never given one. The workspace kind ``clone`` gives a task a repository of its own
  (``WorkspaceRequest.kind``), so that it can commit without writing the plan's repository.
"""

from __future__ import annotations

import enum
import signal
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

ATTEMPT_DIR = "{attempt_dir}"  # in AttemptSpec.env values and argv: the attempt's own directory
AGENT_HOME = "{agent_home}"  # in AttemptSpec.env values: the kept directory of AttemptSpec.home


class Stream(enum.Enum):
    """Which of the agent's output streams a chunk came from."""

    STDOUT = 1
    STDERR = 2


OutputCallback = Callable[[bytes, Stream], None]


@dataclass(frozen=True)
class AttemptKey:
    """Names one attempt uniquely across plans, runs and tasks; ``str()`` of it is the key an
    executor marks the attempt's processes (or jobs) with, and ``prefix`` of a plan finds all of
    that plan's."""

    plan: str  # the plan's uid (a hash of its real path)
    run_id: str
    task_id: str
    attempt: int

    def __str__(self) -> str:
        return f"{self.plan}:{self.run_id}:{self.task_id}:{self.attempt}"

    @staticmethod
    def prefix(plan: str) -> str:
        """The prefix every key of ``plan`` starts with."""
        return f"{plan}:"


# How a task's workspace is made: a git worktree of the plan's repository (its objects and refs
# are written there), or a clone of its own whose commits the executor fetches back.
WORKSPACE_KINDS = ("worktree", "clone")


@dataclass(frozen=True)
class Confinement:
    """What an attempt's processes may touch besides their workspace (OS confinement).

    Paths are written as the agent kinds and the plan write them, and expanded where the
    attempt runs: ``~`` is the home directory there, ``${VAR}`` or ``${VAR:-fallback}`` a
    variable of the attempt's environment. A trailing ``/`` names a directory (made if missing);
    without it, a file that is writable only if it exists (``~/.claude.json``).
    """

    writable: tuple[str, ...] = ()  # the agent kind's state and the plan's ``sandbox_writable``
    read_only: tuple[Path, ...] = ()  # supervisor-side paths the agent must still read (the plan's folder)
    network: bool = True


@dataclass(frozen=True)
class Workspace:
    """A task's workspace as the executor prepared it."""

    path: Path  # its top directory, where the executor keeps it
    branch: str | None  # the task's branch checked out there (None without isolation)
    head: str | None  # the commit checked out when it was prepared
    created: bool = False  # made just now (not reused from an earlier attempt)
    cwd: Path | None = None  # the agent's working directory (``workdir`` inside ``path``)
    repo: Path | None = None  # the plan's repository (where the branch and the pins live)
    kind: str = "worktree"  # one of WORKSPACE_KINDS
    # Paths copied in from the main worktree (``WorkspaceRequest.copy``, ``.worktreeinclude``):
    # never committed by pagent, not counted as uncommitted work.
    copied: tuple[str, ...] = ()


@dataclass(frozen=True)
class WorkspaceRequest:
    """Which workspace a task needs: its branch in the plan's repository, started at ``start``."""

    repo: Path  # the plan's repository, on the supervisor's disk
    path: Path  # where the workspace goes (a key, for an executor that keeps it elsewhere)
    branch: str | None  # None: no isolation, the agent works in ``repo`` itself
    start: str  # the commit (or branch) a new branch starts from
    workdir: str | None = None  # the agent's working directory inside the workspace (made if missing)
    # The commit pagent last recorded for the branch: where it reserved it, then its tip after
    # the task's latest attempt; None when nothing was recorded (runs of older versions).
    expect: str | None = None
    # The task has had no attempt yet: the branch must be exactly at ``expect`` (anything else
    # there is pinned at ``<pins>/planted`` and replaced), and moves to ``start`` if that differs.
    fresh: bool = True
    pins: str | None = None  # the prefix of the task's pins: refs/pagent/<run>/<task>
    kind: str = "worktree"  # one of WORKSPACE_KINDS
    # Paths of the main worktree (``repo``) to copy into a new workspace, to the same place.
    copy: tuple[str, ...] = ()


@dataclass(frozen=True)
class Begun:
    """What a workspace shows just before an attempt starts."""

    head: str  # the commit checked out
    refs: Mapping[str, str] = field(default_factory=dict)  # the plan's repository's branches and tags


@dataclass(frozen=True)
class AttemptSteps:
    """What an attempt's executor is told in advance (see the module docstring): the steps the
    engine will ask of its workspace afterwards, as ``CollectRequest`` will carry them, and the
    times its stop sequence and its watch use."""

    marker: str | None = None  # the done marker's path in the workspace
    auto_commit: bool = True
    kill_grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    sample_every: float = 5.0  # seconds between the watchdog's looks at the attempt


@dataclass(frozen=True)
class AttemptSpec:
    """Everything needed to start one attempt, independent of where it runs."""

    key: AttemptKey
    argv: tuple[str, ...]
    env: Mapping[str, str]  # an overlay; see the module docstring
    cwd: Path | None  # in the workspace; None: a scratch directory of the executor's
    prompt_file: Path | None  # given as stdin; None: stdin is empty
    workspace: Workspace | None = None
    files: Mapping[str, bytes] = field(default_factory=dict)  # into the attempt's own directory
    home: str | None = None  # names the agent's kept directory ({agent_home} in env values)
    confinement: Confinement | None = None  # None: the attempt runs with the user's every right
    steps: AttemptSteps | None = None  # told in advance (None: nothing, as for a preflight)
    verify: bool = False  # runs the task's verify where the attempt ran, after its checks

    @property
    def run_id(self) -> str:
        return self.key.run_id

    @property
    def task_id(self) -> str:
        return self.key.task_id

    @property
    def attempt(self) -> int:
        return self.key.attempt


def file_problem(name: str) -> str | None:
    """Why ``name`` cannot be a key of ``AttemptSpec.files`` (it must stay inside the attempt's
    directory: relative, no ``..``, not empty), or ``None``."""
    path = PurePosixPath(name)
    if not name or path.is_absolute() or ".." in path.parts or name.startswith("~"):
        return f"attempt file {name!r} must be a relative path inside the attempt's directory"
    return None


@dataclass(frozen=True)
class Exit:
    """How an attempt's main process ended: an exit code, or the signal that killed it."""

    code: int | None = None
    signal: int | None = None
    oom: bool = False  # killed by the out-of-memory killer, as far as the executor can tell

    @property
    def signal_name(self) -> str | None:
        """The signal's name ("SIGKILL"), or ``None`` when the process exited."""
        if self.signal is None:
            return None
        try:
            return signal.Signals(self.signal).name
        except ValueError:
            return f"SIG{self.signal}"


@dataclass(frozen=True)
class Sample:
    """One look at an attempt's process tree: CPU seconds used so far, memory, process count."""

    cpu_seconds: float
    rss: int
    procs: int
    starting: bool = False  # the agent has not started yet: the executor is still setting up


@dataclass(frozen=True)
class DiffStats:
    """What a task changed relative to its base: commits ahead and the diff of the merge base."""

    commits: int
    files: int
    insertions: int
    deletions: int
    paths: tuple[str, ...]
    uncommitted: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``diff`` in a task's status view."""
        return {
            "commits": self.commits,
            "files": self.files,
            "insertions": self.insertions,
            "deletions": self.deletions,
            "paths": list(self.paths),
            "uncommitted": self.uncommitted,
        }


@dataclass(frozen=True)
class CollectRequest:
    """What to do and look at in a workspace after an attempt."""

    task_id: str
    attempt: int
    reason: str  # the agent's own verdict, for the auto-commit message
    head_before: str  # the commit checked out when the attempt started
    start_commit: str  # where the task's branch started: diff stats are against it
    auto_commit: bool
    marker: str | None  # the done marker's path in the workspace, never committed
    pins: str | None = None  # the prefix of the task's pins (refs/pagent/<run>/<task>)
    # The attempt's confinement: pagent's own steps on the files the agent wrote (auto-commit)
    # run under it too.
    confinement: Confinement | None = None


@dataclass(frozen=True)
class Facts:
    """What a workspace shows after an attempt (see ``CollectRequest``)."""

    marker_found: bool
    auto_committed: bool
    changed: tuple[str, ...]  # paths this attempt's commits changed
    diff: DiffStats | None
    head: str | None = None  # the commit the workspace's HEAD is at
    branch_tip: str | None = None  # the task branch's commit; None if the branch is gone
    on_branch: bool = True  # the branch exists and HEAD is at its commit (not detached elsewhere)
    descends: bool = True  # the branch still descends from its start commit
    pinned: tuple[str, ...] = ()  # the refs written under refs/pagent for this attempt
    refs: Mapping[str, str] | None = None  # branches and tags now (None: the executor cannot tell)


class AttemptHandle(Protocol):
    """One running attempt, owned by exactly one coroutine of the engine."""

    @property
    def ref(self) -> str:
        """An opaque, persistable reference to the attempt (for ``Executor.sweep``)."""

    @property
    def pid(self) -> int | None:
        """The main process's pid where that means something to a person, for display only."""

    async def wait(self) -> Exit:
        """Return once the main process has ended."""

    def exited(self) -> Exit | None:
        """The main process's exit if it is already known (``wait`` would return at once),
        else ``None``. An executor may always answer ``None``; the engine then watches the
        attempt until ``wait`` returns, as it does for every attempt still running."""

    async def stop(self, grace: float) -> None:
        """Stop the whole tree: SIGTERM, up to ``grace`` seconds, then SIGKILL what is left."""

    async def finish(self, grace: float) -> int:
        """After the main process ended: stop every leftover of its tree and collect the
        remaining output, waiting at most ``grace`` for a pipe that a leftover holds open.
        Return how many leftover processes were stopped."""

    def sample(self) -> Sample | None:
        """Measure the tree now; ``None`` when the executor cannot tell."""


class Executor(Protocol):
    """Runs attempts somewhere; see the module docstring for what it guarantees."""

    def capacity_problem(self, memory: int) -> str | None:
        """Why an attempt needing ``memory`` bytes free cannot start now ("waiting for memory:
        ..."), or ``None`` when it can."""

    def confinement_problem(self) -> str | None:
        """Why attempts cannot be confined where they run (one line: "bubblewrap is not
        installed ..."), or ``None`` when a ``Confinement`` will hold."""

    def capacity_limit(self) -> int | None:
        """The most memory (bytes) an attempt could ever find free where attempts run (a
        machine's total), or ``None`` when the executor cannot tell: a ``min_free_memory``
        above it would wait for ever, so the run refuses it before it begins."""

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        """Create (or reuse) the task's workspace; ``GitError`` or ``OSError`` if it cannot."""

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun:
        """Before an attempt: remove a stale done marker, put HEAD back on the task's branch if
        an earlier attempt left it elsewhere (``GitError`` if it cannot); what it shows then."""

    def start(
        self, spec: AttemptSpec, on_output: OutputCallback
    ) -> AbstractAsyncContextManager[AttemptHandle]:
        """Start ``spec`` and yield its handle; ``OSError`` if it cannot start at all."""

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        """After an attempt: pins, the marker, auto-commit (only on the task's branch), what
        changed, the diff stats and the branch's state; ``GitError`` or ``OSError`` if the
        workspace cannot be trusted or read (its commits are pinned all the same)."""

    async def sweep(self, prefix: str, refs: Sequence[str], grace: float) -> int:
        """Stop whatever still runs of attempts whose keys start with ``prefix`` or whose
        references are ``refs`` (their supervisor died), with ``grace`` between SIGTERM and
        SIGKILL; return how many processes (or jobs) it stopped."""

    async def version(self, argv: Sequence[str], env: Mapping[str, str], home: str | None = None) -> str:
        """``argv`` run with ``--version``: its first line ("unknown" if it says nothing useful);
        ``OSError`` if the program cannot be run, ``TimeoutError`` if it does not answer.
        ``env`` is an overlay like an attempt's, placeholders and ``home`` included (a CLI may
        write into its state directory even to print its version)."""
