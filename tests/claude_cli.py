"""Locate or install the real Claude Code CLI for tests, and run it offline, bounded.

The CLI is installed from the npm registry into a cache directory shared by all test
processes (``PAGENT_CLAUDE_CACHE``, else ``<repo>/.cache/claude-cli-<version>``), once: an
``fcntl`` lock serialises installers and a marker file written after a successful check keeps
a half-finished install from being reused.
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

CLAUDE_CODE_VERSION = "2.1.328"
CLAUDE_CODE_PACKAGE = f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"

# An install downloads a ~370 MB native binary; allow for a slow registry mirror.
_INSTALL_TIMEOUT_S = 900.0
_VERSION_TIMEOUT_S = 60.0
_MARKER = ".pagent-installed"
_REPO = Path(__file__).resolve().parent.parent
# Any non-empty key passes the CLI's local check; the fake server never verifies it.
FAKE_API_KEY = "sk-ant-api03-fake-key-for-offline-tests"


@dataclass(frozen=True)
class ClaudeCli:
    """Where the CLI is, or why there is none: exactly one of `path` and `reason` is set."""

    path: Path | None
    reason: str = ""


def default_cache_dir() -> Path:
    """Return the install directory: ``$PAGENT_CLAUDE_CACHE`` or ``<repo>/.cache/claude-cli-…``."""
    configured = os.environ.get("PAGENT_CLAUDE_CACHE")
    if configured:
        return Path(configured).expanduser().resolve()
    return _REPO / ".cache" / f"claude-cli-{CLAUDE_CODE_VERSION}"


def ensure_claude_cli(cache_dir: Path | None = None) -> ClaudeCli:
    """Return the ``claude`` executable of a verified install in `cache_dir`, installing if needed.

    Never raises for an environment problem: a missing npm, a failed install or a binary
    that does not report the expected version yields ``ClaudeCli(None, reason)``.
    """
    cache = cache_dir or default_cache_dir()
    executable = cache / "node_modules" / ".bin" / "claude"
    try:
        cache.mkdir(parents=True, exist_ok=True)
        # A 370 MB binary inside the work tree must never be committed by accident.
        (cache / ".gitignore").write_text("*\n")
        with (cache / ".lock").open("w") as lock:
            # Blocks while another test process installs; it then finds the marker below.
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (cache / _MARKER).is_file() and os.access(executable, os.X_OK):
                return ClaudeCli(executable)
            problem = _install(cache) or _check_version(executable)
            if problem:
                return ClaudeCli(None, problem)
            (cache / _MARKER).write_text(CLAUDE_CODE_VERSION + "\n")
            return ClaudeCli(executable)
    except OSError as exc:
        return ClaudeCli(None, f"cannot use the CLI cache {str(cache)!r}: {exc}")


def _install(cache: Path) -> str:
    """Run ``npm install`` into `cache`; return an empty string or why it failed."""
    npm = shutil.which("npm")
    if npm is None:
        return "npm is not on PATH, so the Claude Code CLI cannot be installed"
    command = [
        npm,
        "install",
        "--prefix",
        str(cache),
        "--no-audit",
        "--no-fund",
        "--loglevel=error",
        CLAUDE_CODE_PACKAGE,
    ]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired:
        return f"npm install {CLAUDE_CODE_PACKAGE} took over {_INSTALL_TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        tail = " | ".join((done.stderr or done.stdout).strip().splitlines()[-3:])
        return f"npm install {CLAUDE_CODE_PACKAGE} exited {done.returncode}: {tail}"
    return ""


def _check_version(executable: Path) -> str:
    """Run ``claude --version``; return an empty string or why the binary is unusable."""
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
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{str(executable)!r} --version failed: {exc}"
    if not done.stdout.startswith(CLAUDE_CODE_VERSION):
        return (
            f"{str(executable)!r} --version printed {done.stdout.strip()!r}, expected {CLAUDE_CODE_VERSION}"
        )
    return ""


def claude_env(
    base_url: str | None,
    home: Path,
    *,
    api_key: str | None = FAKE_API_KEY,
    oauth_token: str | None = None,
    max_retries: int = 2,
) -> dict[str, str]:
    """Return a complete environment that runs the CLI offline against `base_url`.

    Built from scratch rather than from ``os.environ`` so that an outer agent's variables
    (``ANTHROPIC_*``, ``CLAUDE_CODE_*``, ``CLAUDECODE``) cannot leak into the run.  `home`
    must be an existing throwaway directory: the CLI writes its config, sessions and backups
    there.  `oauth_token` makes the CLI behave as a subscriber (it then reads the
    ``anthropic-ratelimit-unified-*`` headers and reports plan usage limits); with neither
    credential the run has none at all.  `base_url` None leaves the CLI's default API host,
    which is only safe in a run that never reaches the network (no credentials).
    """
    env = {
        # The Bash tool needs the usual PATH; the CLI itself is a self-contained binary.
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        # Without it the CLI resolves telemetry hosts over DNS and sends `HEAD /api/hello`.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Bounds the retries of 5xx/429/529; the first retry waits ~0.5 s, then it doubles.
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
    }
    if base_url is not None:
        env["ANTHROPIC_BASE_URL"] = base_url
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    if oauth_token is not None:
        env["CLAUDE_CODE_OAUTH_TOKEN"] = oauth_token
    return env


@dataclass(frozen=True)
class ClaudeRun:
    """The outcome of one bounded CLI run: its exit code (None if killed on timeout)."""

    returncode: int | None
    stdout: str
    stderr: str
    elapsed_s: float
    timed_out: bool

    @property
    def events(self) -> list[dict[str, Any]]:
        """The stream-json objects printed on stdout, in order; other lines are skipped."""
        found: list[dict[str, Any]] = []
        for line in self.stdout.splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                found.append(event)
        return found

    @property
    def result(self) -> dict[str, Any] | None:
        """The last ``result`` event, or None when the CLI printed none."""
        results = [event for event in self.events if event.get("type") == "result"]
        return results[-1] if results else None


STREAM_JSON_ARGS = ("-p", "--output-format", "stream-json", "--verbose")


def run_claude(
    executable: Path,
    *,
    prompt: str,
    cwd: Path,
    env: Mapping[str, str],
    args: Sequence[str] = ("--permission-mode", "acceptEdits"),
    timeout_s: float = 60.0,
) -> ClaudeRun:
    """Run ``claude -p --output-format stream-json --verbose`` plus `args` in `cwd`.

    The prompt goes to stdin, which is then closed: ``-p`` waits for EOF.  The run never
    outlives `timeout_s`: on expiry its whole process group is killed (the CLI's tool
    children included) and the output so far is returned with ``timed_out=True``.
    """
    command = [str(executable), *STREAM_JSON_ARGS, *args]
    started = time.monotonic()
    # A session of its own makes the CLI the leader of a process group we can kill whole.
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=dict(env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        start_new_session=True,
    ) as proc:
        try:
            stdout, stderr = proc.communicate(prompt, timeout=timeout_s)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
        # Also after a normal exit: a tool's background child must not outlive the test.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        if timed_out:
            stdout, stderr = proc.communicate()
    return ClaudeRun(
        None if timed_out else proc.returncode, stdout, stderr, time.monotonic() - started, timed_out
    )
