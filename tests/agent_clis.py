"""Locate or install the real Codex, Gemini and opencode CLIs for tests, and run them bounded.

Each CLI is installed from the npm registry, pinned, into a directory of its own under a cache
root shared by all test processes (``PAGENT_AGENT_CLI_CACHE``, else ``<repo>/.cache/agent-clis``),
once per machine: an ``fcntl`` lock per package serialises installers, and a marker file written
only after the installed program reported the pinned version keeps a half-finished install from
being reused.  Nothing here raises for an environment problem (no npm, a failed download): the
result then carries the reason, for a visible ``pytest.skip``.

`run_agent` runs one CLI the way an unattended supervisor would: argv only, stdin closed, its
own session (so its whole tree can be killed), a hard time bound.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

_REPO = Path(__file__).resolve().parent.parent
_MARKER = ".pagent-installed"
# Codex and opencode download native binaries of ~350-400 MB; allow for a slow mirror.
_INSTALL_TIMEOUT_S = 900.0
_VERSION_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class AgentCliSpec:
    """One pinned CLI: its npm package and version, and the program name in ``.bin``."""

    name: str
    package: str
    version: str
    program: str

    @property
    def pinned(self) -> str:
        """The ``package@version`` argument for ``npm install``."""
        return f"{self.package}@{self.version}"

    @property
    def dirname(self) -> str:
        """The cache subdirectory: the package name without its scope, and the version."""
        return f"{self.package.rsplit('/', 1)[-1]}-{self.version}"


CODEX = AgentCliSpec("codex", "@openai/codex", "0.169.0", "codex")
GEMINI = AgentCliSpec("gemini", "@google/gemini-cli", "0.61.0", "gemini")
OPENCODE = AgentCliSpec("opencode", "opencode-ai", "1.18.33", "opencode")
SPECS = {spec.name: spec for spec in (CODEX, GEMINI, OPENCODE)}


@dataclass(frozen=True)
class AgentCli:
    """Where a CLI is, or why there is none: exactly one of `path` and `reason` is set.

    `installed_s` is how long this call spent installing (0 when the cache was ready).
    """

    spec: AgentCliSpec
    path: Path | None
    reason: str = ""
    installed_s: float = 0.0


def cache_root() -> Path:
    """Return the cache root: ``$PAGENT_AGENT_CLI_CACHE`` or ``<repo>/.cache/agent-clis``."""
    configured = os.environ.get("PAGENT_AGENT_CLI_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    return _REPO / ".cache" / "agent-clis"


def ensure_agent_cli(name: str, root: Path | None = None) -> AgentCli:
    """Return the executable of a verified install of CLI `name`, installing it if needed.

    `name` is a key of `SPECS` ("codex", "gemini", "opencode").  Never raises for an
    environment problem: a missing npm, a failed install or a program that does not report
    the pinned version yields ``AgentCli(spec, None, reason)``.
    """
    spec = SPECS[name]
    cache = (root or cache_root()) / spec.dirname
    executable = cache / "node_modules" / ".bin" / spec.program
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # Hundreds of MB inside a work tree must never be committed by accident.
        (cache / ".gitignore").write_text("*\n")
        with (cache / ".lock").open("w") as lock:
            # Blocks while another process installs; it then finds the marker below.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (cache / _MARKER).is_file() and os.access(executable, os.X_OK):
                return AgentCli(spec, executable)
            started = time.monotonic()
            problem = _install(spec, cache) or _check_version(spec, executable)
            if problem:
                return AgentCli(spec, None, problem)
            (cache / _MARKER).write_text(spec.version + "\n")
            return AgentCli(spec, executable, installed_s=time.monotonic() - started)
    except OSError as exc:
        return AgentCli(spec, None, f"cannot use the CLI cache {str(cache)!r}: {exc}")


def _install(spec: AgentCliSpec, cache: Path) -> str:
    """Run ``npm install`` of `spec` into `cache`; return an empty string or why it failed."""
    npm = shutil.which("npm")
    if npm is None:
        return f"npm is not on PATH, so {spec.pinned} cannot be installed"
    command = [
        npm,
        "install",
        "--prefix",
        str(cache),
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        spec.pinned,
    ]
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_INSTALL_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        return f"npm install {spec.pinned} took over {_INSTALL_TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return f"npm install {spec.pinned} exited {done.returncode}: {tail}"
    return ""


def _check_version(spec: AgentCliSpec, executable: Path) -> str:
    """Run ``PROGRAM --version``; return an empty string or why the program is unusable.

    The CLIs word it differently ("codex-cli 0.169.0", "0.61.0"), so the pinned version must
    appear as a word of the output rather than at its start.
    """
    if not os.access(executable, os.X_OK):
        return f"the install has no executable {str(executable)!r}"
    try:
        done = subprocess.run(
            [str(executable), "--version"],
            capture_output=True,
            text=True,
            timeout=_VERSION_TIMEOUT_S,
            check=False,
            stdin=subprocess.DEVNULL,
            env=_version_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{str(executable)!r} --version failed: {exc}"
    if spec.version not in done.stdout.split():
        shown = (done.stdout or done.stderr).strip()[-200:]
        return f"{str(executable)!r} --version printed {shown!r}, expected {spec.version}"
    return ""


def _version_env() -> dict[str, str]:
    """A minimal environment for ``--version``: no update checks, no writes to the real home."""
    scratch = cache_root() / ".version-home"
    scratch.mkdir(parents=True, exist_ok=True)
    return {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(scratch),
        "CODEX_HOME": str(scratch / ".codex"),
        "XDG_CONFIG_HOME": str(scratch / ".config"),
        "XDG_DATA_HOME": str(scratch / ".local" / "share"),
        "XDG_CACHE_HOME": str(scratch / ".cache"),
        "XDG_STATE_HOME": str(scratch / ".local" / "state"),
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "LANG": "C.UTF-8",
    }


def install_size_bytes(cli: AgentCli) -> int:
    """Return the bytes the install of `cli` occupies on disk (0 when it is not installed)."""
    if cli.path is None:
        return 0
    cache = cli.path.parent.parent.parent
    seen: set[int] = set()
    total = 0
    for path in cache.rglob("*"):
        with contextlib.suppress(OSError):
            info = path.lstat()
            # opencode's install hard-links its 185 MB binary twice: count each inode once, as du does.
            if path.is_file() and not path.is_symlink() and info.st_ino not in seen:
                seen.add(info.st_ino)
                total += info.st_size
    return total


@dataclass(frozen=True)
class AgentRun:
    """The outcome of one bounded CLI run: its exit code (None if killed on timeout)."""

    argv: tuple[str, ...]
    returncode: int | None
    stdout: str
    stderr: str
    elapsed_s: float
    timed_out: bool

    @property
    def events(self) -> list[dict[str, Any]]:
        """The JSON objects printed on stdout, in order; other lines are skipped."""
        found: list[dict[str, Any]] = []
        for line in self.stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return found

    def types(self) -> list[str]:
        """The ``type`` of every event, in order."""
        return [str(event.get("type")) for event in self.events]


def run_agent(argv: Sequence[str], *, cwd: Path, env: Mapping[str, str], timeout_s: float = 60.0) -> AgentRun:
    """Run `argv` in `cwd` with exactly `env`, stdin closed, for at most `timeout_s`.

    The CLI gets ``/dev/null`` as stdin (Codex otherwise waits for more input).  On expiry its
    whole process group is killed and the output so far is returned with ``timed_out=True``;
    after a normal exit the group is killed too, so no tool child outlives the run.
    """
    started = time.monotonic()
    with subprocess.Popen(
        list(argv),
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        errors="replace",
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if timed_out:
            stdout, stderr = proc.communicate()
    return AgentRun(
        tuple(argv),
        None if timed_out else proc.returncode,
        stdout,
        stderr,
        time.monotonic() - started,
        timed_out,
    )
