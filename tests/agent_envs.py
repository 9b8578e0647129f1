"""How to start each real agent CLI headless, offline, against a scripted server on 127.0.0.1.

Each ``*_launch`` function writes the config files its CLI needs into a scratch directory and
returns a `Launch`: the complete argv (headless flags included, prompt last) and a complete
environment built from scratch, so that nothing of the real home, an outer agent's variables
or a user's login can leak in.  Every CLI gets its own ``HOME``, ``TMPDIR`` and ``XDG_*``
directories under the scratch directory; Codex also its ``CODEX_HOME``.

The retry and idle settings default to small bounds (no CLI retries) so that tests are quick;
``None`` leaves a CLI's own default.  What each setting does was measured with the pinned
versions (tests/transcripts/README-agents.md).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from pathlib import Path

# Any non-empty key passes the CLIs' local checks; the scripted servers never verify it.
FAKE_OPENAI_KEY = "sk-fake-key-for-offline-tests"
FAKE_GEMINI_KEY = "fake-gemini-key-for-offline-tests"
CODEX_MODEL = "gpt-5.5"  # known to Codex: no "model metadata not found" warning
GEMINI_MODEL = "gemini-2.5-flash"  # given with -m, so no model-router call comes first
OPENCODE_MODEL = "fake-model"


@dataclass(frozen=True)
class Launch:
    """A complete command line and environment for one CLI run, and the config files written."""

    argv: tuple[str, ...]
    env: dict[str, str]
    config_files: dict[str, str]  # path -> content, for the record


def scratch_env(root: Path, cwd: Path) -> dict[str, str]:
    """The base environment: PATH, a locale, and HOME, TMPDIR and XDG dirs inside `root`.

    ``PWD`` is set to `cwd` because opencode resolves relative paths against ``$PWD``, not
    against its real working directory.
    """
    dirs = {
        "HOME": root / "home",
        "TMPDIR": root / "tmp",
        "XDG_CONFIG_HOME": root / "home" / ".config",
        "XDG_DATA_HOME": root / "home" / ".local" / "share",
        "XDG_CACHE_HOME": root / "home" / ".cache",
        "XDG_STATE_HOME": root / "home" / ".local" / "state",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    env = {name: str(path) for name, path in dirs.items()}
    env |= {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "PWD": str(cwd),
    }
    return env


def codex_launch(
    executable: Path,
    base_url: str,
    root: Path,
    cwd: Path,
    *,
    prompt: str,
    sandbox: str | None = "workspace-write",
    model: str | None = CODEX_MODEL,
    request_max_retries: int | None = 0,
    stream_max_retries: int | None = 0,
    stream_idle_timeout_ms: int | None = None,
    api_key: str | None = FAKE_OPENAI_KEY,
    extra_args: Sequence[str] = (),
) -> Launch:
    """``codex exec --json [-s SANDBOX] [-m MODEL] PROMPT`` with a provider table for `base_url`.

    The provider lives in ``$CODEX_HOME/config.toml``; its retry and idle settings must sit in
    the provider's own table (top-level keys of the same names are ignored).  `sandbox` None
    leaves Codex's default, read-only.
    """
    env = scratch_env(root, cwd)
    codex_home = root / "codex-home"
    codex_home.mkdir(exist_ok=True)
    provider = [
        "[model_providers.fake]",
        'name = "fake"',
        f'base_url = "{base_url}"',
        'env_key = "FAKE_OPENAI_API_KEY"',
        'wire_api = "responses"',
    ]
    for key, value in (
        ("request_max_retries", request_max_retries),
        ("stream_max_retries", stream_max_retries),
        ("stream_idle_timeout_ms", stream_idle_timeout_ms),
    ):
        if value is not None:
            provider.append(f"{key} = {value}")
    config = "\n".join(['model_provider = "fake"', "", *provider]) + "\n"
    (codex_home / "config.toml").write_text(config)
    env["CODEX_HOME"] = str(codex_home)
    if api_key is not None:
        env["FAKE_OPENAI_API_KEY"] = api_key
    argv = [str(executable), "exec", "--json"]
    if sandbox is not None:
        argv += ["-s", sandbox]
    if model is not None:
        argv += ["-m", model]
    argv += [*extra_args, prompt]
    return Launch(tuple(argv), env, {"$CODEX_HOME/config.toml": config})


def gemini_launch(
    executable: Path,
    base_url: str,
    root: Path,
    cwd: Path,
    *,
    prompt: str,
    approval: Sequence[str] = ("--yolo",),
    model: str | None = GEMINI_MODEL,
    max_attempts: int | None = 1,
    trust: bool = True,
    api_key: str | None = FAKE_GEMINI_KEY,
    extra_args: Sequence[str] = (),
) -> Launch:
    """``gemini -m MODEL --output-format stream-json APPROVAL --skip-trust -p PROMPT``.

    ``GOOGLE_GEMINI_BASE_URL`` alone switches auth to "gateway", which headless mode rejects;
    ``$HOME/.gemini/settings.json`` therefore selects API-key auth, and carries
    ``general.maxAttempts`` (the CLI's own attempts per model call, 1-10, default 10).
    `approval` ``()`` leaves the default mode, in which ``write_file`` is not registered.
    """
    env = scratch_env(root, cwd)
    settings: dict[str, object] = {"security": {"auth": {"selectedType": "gemini-api-key"}}}
    if max_attempts is not None:
        settings["general"] = {"maxAttempts": max_attempts}
    text = json.dumps(settings, indent=2) + "\n"
    settings_dir = root / "home" / ".gemini"
    settings_dir.mkdir(parents=True, exist_ok=True)
    (settings_dir / "settings.json").write_text(text)
    env["GOOGLE_GEMINI_BASE_URL"] = base_url
    if api_key is not None:
        env["GEMINI_API_KEY"] = api_key
    argv = [str(executable)]
    if model is not None:
        argv += ["-m", model]
    argv += ["--output-format", "stream-json", *approval]
    if trust:
        argv.append("--skip-trust")
    argv += [*extra_args, "-p", prompt]
    return Launch(tuple(argv), env, {"$HOME/.gemini/settings.json": text})


def opencode_launch(
    executable: Path,
    base_url: str,
    root: Path,
    cwd: Path,
    *,
    prompt: str,
    permission: Mapping[str, str] | None = None,
    header_timeout_ms: int | None = None,
    chunk_timeout_ms: int | None = None,
    api_key: str | None = FAKE_OPENAI_KEY,
    cost_per_million: tuple[float, float] | None = (3.0, 15.0),
    extra_args: Sequence[str] = (),
) -> Launch:
    """``opencode run --format json PROMPT`` with an OpenAI-compatible provider for `base_url`.

    The config goes to the file ``OPENCODE_CONFIG`` names.  `permission` defaults to allowing
    edits and bash (``"ask"`` is auto-rejected in ``run``).  `header_timeout_ms` and
    `chunk_timeout_ms` are the provider's ``headerTimeout``/``chunkTimeout`` (default 300000
    each); each timeout is retried like a 5xx.  `cost_per_million` (input, output) in USD makes
    opencode report a non-zero ``cost``.
    """
    env = scratch_env(root, cwd)
    options: dict[str, object] = {"baseURL": base_url}
    if api_key is not None:
        options["apiKey"] = api_key
    if header_timeout_ms is not None:
        options["headerTimeout"] = header_timeout_ms
    if chunk_timeout_ms is not None:
        options["chunkTimeout"] = chunk_timeout_ms
    model: dict[str, object] = {"name": "Fake model", "tool_call": True}
    if cost_per_million is not None:
        model["cost"] = {"input": cost_per_million[0], "output": cost_per_million[1]}
    config = {
        "$schema": "https://opencode.ai/config.json",
        "provider": {
            "fake": {
                "npm": "@ai-sdk/openai-compatible",
                "name": "Fake",
                "options": options,
                "models": {OPENCODE_MODEL: model},
            }
        },
        "model": f"fake/{OPENCODE_MODEL}",
        "small_model": f"fake/{OPENCODE_MODEL}",
        "autoupdate": False,
        "share": "disabled",
        "permission": dict(permission or {"edit": "allow", "bash": "allow"}),
    }
    text = json.dumps(config, indent=2) + "\n"
    path = root / "opencode.json"
    path.write_text(text)
    env |= {
        "OPENCODE_CONFIG": str(path),
        "OPENCODE_DISABLE_MODELS_FETCH": "1",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
    }
    argv = (str(executable), "run", "--format", "json", *extra_args, prompt)
    return Launch(argv, env, {"$OPENCODE_CONFIG": text})
