"""Locate or install the real Claude Code CLI for tests, and the environment to run it offline.

The CLI is installed from the npm registry into a cache directory shared by all test
processes (``PAGENT_CLAUDE_CACHE``, else ``<repo>/.cache/claude-cli-<version>``), once: an
``fcntl`` lock serialises installers and a marker file written after a successful check keeps
a half-finished install from being reused.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

CLAUDE_CODE_VERSION = "2.1.328"
CLAUDE_CODE_PACKAGE = f"@anthropic-ai/claude-code@{CLAUDE_CODE_VERSION}"

# An install downloads a ~370 MB native binary; allow for a slow registry mirror.
_INSTALL_TIMEOUT_S = 900.0
_VERSION_TIMEOUT_S = 60.0
_MARKER = ".pagent-installed"
_REPO = Path(__file__).resolve().parent.parent


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
    command = [npm, "install", "--prefix", str(cache), "--no-audit", "--no-fund",
               "--loglevel=error", CLAUDE_CODE_PACKAGE]
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=_INSTALL_TIMEOUT_S, check=False)
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
        done = subprocess.run([str(executable), "--version"], capture_output=True, text=True,
                              timeout=_VERSION_TIMEOUT_S, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{str(executable)!r} --version failed: {exc}"
    if not done.stdout.startswith(CLAUDE_CODE_VERSION):
        return (f"{str(executable)!r} --version printed {done.stdout.strip()!r}, "
                f"expected {CLAUDE_CODE_VERSION}")
    return ""


def claude_env(base_url: str, home: Path, *, api_key: str | None = "sk-ant-fake-key",
               max_retries: int = 2) -> dict[str, str]:
    """Return a complete environment that runs the CLI offline against `base_url`.

    Built from scratch rather than from ``os.environ`` so that an outer agent's variables
    (``ANTHROPIC_*``, ``CLAUDE_CODE_*``, ``CLAUDECODE``) cannot leak into the run.  `home`
    must be a throwaway directory: the CLI writes its config, sessions and backups there.
    With ``api_key=None`` the run has no credentials at all.
    """
    env = {
        # The Bash tool needs the usual PATH; the CLI itself is a self-contained binary.
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": base_url,
        # Without it the CLI resolves telemetry hosts over DNS and sends `HEAD /api/hello`.
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        # Bounds the retries of 5xx/429/529; the first retry waits ~0.5 s, then it doubles.
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
    }
    if api_key is not None:
        env["ANTHROPIC_API_KEY"] = api_key
    return env
