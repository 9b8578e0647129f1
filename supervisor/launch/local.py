"""``LocalExecutor``: attempts as local processes, in workspaces on this machine's disk.

It fills the executor seam (``supervisor.seam``) with what runs here: admission by available
memory (GNU parallel's ``--memfree``), workspaces from an injected ``Workspaces`` (git worktrees,
``supervisor.workspace.local``, whose git calls die when their await is cancelled), processes
from ``LocalLauncher`` (own session, pidfd, parent-death signal), each attempt's processes
marked with its key in ``PAGENT_COOKIE`` and found again by psutil
(``supervisor.launch.proctree``), and a ``/proc`` sweep after a crash. An attempt with a
``Confinement`` runs under bubblewrap (``supervisor.launch.confine``, ``.sandbox``): the agent's
own program is checked first (the argv then starts with ``env``), and a death by signal reads
the same as without the sandbox.

The agent's environment is this process's environment when the executor was made, ``PWD`` set
to the agent's working directory, the spec's overlay on top (``{attempt_dir}`` and
``{agent_home}`` filled in), then ``PAGENT_COOKIE``, ``PAGENT_PROMPT_FILE`` and
``PAGENT_WORKTREE``; ``{attempt_dir}`` is filled in the argv too (a file named on the command
line, as Codex's ``--output-schema FILE``).

An attempt's own directory (``AttemptSpec.files``, ``{attempt_dir}``) is a private temporary
directory (``pagent-attempt-*`` in the system's temp dir), removed when the attempt ends: it
holds only config files made from the plan, and the next attempt gets fresh ones. Agents' kept
directories (``AttemptSpec.home``, ``{agent_home}``) are ``homes/<agent>`` under the root the
executor is given (the plan's ``.pagent/``, so a night's CLI state stays beside its runs and is
never in the user's home), made 0700 when first used and never removed by pagent.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Protocol

import anyio
import psutil

from supervisor.launch import proctree
from supervisor.launch.confine import policy_for
from supervisor.launch.process import LocalHandle, LocalLauncher, check_executable
from supervisor.launch.sandbox import SandboxError, sandbox_problem, wrap
from supervisor.seam import (
    AGENT_HOME,
    ATTEMPT_DIR,
    AttemptKey,
    AttemptSpec,
    Begun,
    CollectRequest,
    Facts,
    OutputCallback,
    Workspace,
    WorkspaceRequest,
    file_problem,
)

VERSION_TIMEOUT = 60.0


class Workspaces(Protocol):
    """Where the local executor's tasks work. Cancelling one of these awaits stops what it runs
    (git and its children) at once: the engine cancels them when pagent-run is stopped."""

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        """Create or reuse the workspace; ``GitError``/``OSError`` if it cannot."""

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun:
        """Remove a stale done marker; what the workspace shows before the attempt."""

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        """Pins, marker, auto-commit, what changed, diff stats, the branch's state."""


class LocalExecutor:
    """Runs attempts on this machine; see the module docstring and ``supervisor.seam``."""

    def __init__(
        self,
        workspaces: Workspaces,
        *,
        available_memory: Callable[[], int] = proctree.available_memory,
        launcher: LocalLauncher | None = None,
        homes: Path | None = None,
    ) -> None:
        """``homes``: where agents' kept directories go (``<homes>/<agent>``); default: a
        directory of this user's in the system's temp dir."""
        self._workspaces = workspaces
        self._homes = homes or Path(tempfile.gettempdir()) / f"pagent-homes-{os.getuid()}"
        self._available_memory = available_memory
        self._launcher = launcher or LocalLauncher()
        self._base_env = dict(os.environ)
        # Concurrent ``git worktree add`` calls race on git's own lock files.
        self._prepare_lock = anyio.Lock()

    def capacity_problem(self, memory: int) -> str | None:
        """Not enough memory available for ``memory`` more bytes (``min_free_memory``)."""
        if memory <= 0:
            return None  # no probe at all: the common case costs nothing
        available = self._available_memory()
        if available >= memory:
            return None
        return (
            f"waiting for memory: {available // 2**20} MiB available, "
            f"{memory // 2**20} MiB required (min_free_memory)"
        )

    def confinement_problem(self) -> str | None:
        """Why bubblewrap cannot confine attempts here (asked once), or ``None``."""
        return sandbox_problem()

    def capacity_limit(self) -> int | None:
        """This machine's total memory: no attempt can ever find more free."""
        return int(psutil.virtual_memory().total)

    async def prepare(self, request: WorkspaceRequest) -> Workspace:
        async with self._prepare_lock:
            return await self._workspaces.prepare(request)

    async def begin(self, workspace: Workspace, marker: str | None) -> Begun:
        return await self._workspaces.begin(workspace, marker)

    async def collect(self, workspace: Workspace, request: CollectRequest) -> Facts:
        return await self._workspaces.collect(workspace, request)

    @asynccontextmanager
    async def start(self, spec: AttemptSpec, on_output: OutputCallback) -> AsyncIterator[LocalHandle]:
        """Start ``spec``'s process; on leaving, its tree is gone, its pipes are closed and its
        attempt directory is removed."""
        cookie = str(spec.key)
        with self._attempt_dir(spec) as attempt_dir, _cwd(spec.cwd) as cwd:
            env = {**self._base_env, "PWD": str(cwd)}
            env.update(self._overlay(spec, attempt_dir))
            env[proctree.COOKIE_VAR] = cookie
            if spec.prompt_file is not None:
                env["PAGENT_PROMPT_FILE"] = str(spec.prompt_file)
            if spec.workspace is not None:
                env["PAGENT_WORKTREE"] = str(spec.workspace.path)
            async with self._launcher.start(
                self._confined(spec, cwd, env, attempt_dir),
                cwd=cwd,
                env=env,
                stdin=spec.prompt_file,
                cookie=cookie,
                on_output=on_output,
                signal_codes=spec.confinement is not None,
            ) as handle:
                yield handle

    @contextmanager
    def _attempt_dir(self, spec: AttemptSpec) -> Iterator[Path | None]:
        """The attempt's own directory with ``spec.files`` written into it, while the attempt
        runs; ``None`` when the spec neither has files nor names the directory."""
        if not spec.files and not any(ATTEMPT_DIR in value for value in (*spec.env.values(), *spec.argv)):
            yield None
            return
        with tempfile.TemporaryDirectory(prefix="pagent-attempt-") as made:
            root = Path(made)
            for name, content in spec.files.items():
                if problem := file_problem(name):
                    raise ValueError(problem)
                path = root / name
                path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                path.touch(mode=0o600)
                path.write_bytes(content)
            yield root

    def _overlay(self, spec: AttemptSpec, attempt_dir: Path | None) -> dict[str, str]:
        """The spec's environment with ``{attempt_dir}`` and ``{agent_home}`` filled in."""
        home = None
        if spec.home is not None and any(AGENT_HOME in value for value in spec.env.values()):
            if "/" in spec.home or spec.home in ("", ".", ".."):
                raise ValueError(f"agent home {spec.home!r} must be a plain name")
            home = self._homes / spec.home
            home.mkdir(parents=True, exist_ok=True, mode=0o700)
        env = {}
        for name, given in spec.env.items():
            value = given if attempt_dir is None else given.replace(ATTEMPT_DIR, str(attempt_dir))
            env[name] = value if home is None else value.replace(AGENT_HOME, str(home))
        return env

    def _confined(
        self, spec: AttemptSpec, cwd: Path, env: Mapping[str, str], attempt_dir: Path | None
    ) -> Sequence[str]:
        """``spec.argv`` with ``{attempt_dir}`` filled in, under bubblewrap when the spec is
        confined (the attempt's directory, its kept home and a scratch working directory writable
        too); ``OSError`` if the agent's program cannot be run or the sandbox cannot be built
        (the attempt: launch-failed)."""
        argv = spec.argv
        if attempt_dir is not None:
            argv = tuple(arg.replace(ATTEMPT_DIR, str(attempt_dir)) for arg in argv)
        if spec.confinement is None:
            return argv
        check_executable(argv[0], env, cwd)
        own = [path for path in (attempt_dir, self._home_of(spec)) if path is not None]
        if spec.cwd is None:
            own.append(cwd)
        try:
            return wrap(argv, policy_for(spec.confinement, spec.workspace, env, own), cwd)
        except (SandboxError, OSError) as exc:
            raise OSError(str(exc)) from None

    def _home_of(self, spec: AttemptSpec) -> Path | None:
        """The agent's kept directory, when its environment names it (made by ``_overlay``)."""
        if spec.home is None or not any(AGENT_HOME in value for value in spec.env.values()):
            return None
        return self._homes / spec.home

    async def sweep(self, prefix: str, refs: Sequence[str], grace: float) -> int:
        """Stop every process whose cookie starts with ``prefix``, and each process named by a
        reference (``pid:start time``, checked: pids get reused) with its descendants."""
        procs = {p.pid: p for p in proctree.with_cookie(prefix)}
        for ref in refs:
            main = _process_of(ref)
            if main is not None:
                procs[main.pid] = main
                procs.update((p.pid, p) for p in proctree.descendants(main))
        if procs:
            await proctree.stop_processes(list(procs.values()), None, grace)
        return len(procs)

    async def version(self, argv: Sequence[str], env: Mapping[str, str], home: str | None = None) -> str:
        """``argv[0] --version``'s first line (see ``supervisor.seam.Executor.version``)."""
        command = [argv[0], "--version"]
        probe = AttemptSpec(AttemptKey("", "", "", 0), tuple(command), env, None, None, home=home)

        def run(full_env: dict[str, str]) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=VERSION_TIMEOUT,
                stdin=subprocess.DEVNULL,
                env=full_env,
                check=False,
            )

        with self._attempt_dir(probe) as attempt_dir:
            full_env = {**self._base_env, **self._overlay(probe, attempt_dir)}
            try:
                done = await anyio.to_thread.run_sync(run, full_env)
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"{argv[0]} --version") from None
        lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
        return lines[0] if lines and done.returncode == 0 else "unknown"


@contextmanager
def _cwd(cwd: Path | None) -> Iterator[Path]:
    """``cwd``, or a scratch directory for the attempt's lifetime when it has none."""
    if cwd is not None:
        yield cwd
        return
    with tempfile.TemporaryDirectory(prefix="pagent-scratch-") as scratch:
        yield Path(scratch)


def _process_of(ref: str) -> psutil.Process | None:
    """The process a local attempt reference names, if it still runs."""
    pid, _, started = ref.partition(":")
    try:
        return proctree.find(int(pid), float(started) if started else None)
    except ValueError:
        return None
