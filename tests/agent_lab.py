"""A lab for end-to-end runs of the agent kinds through the installed ``pagent-run``.

A `Lab` is a git repository, a plan beside it and one scripted API server per agent on
127.0.0.1: Claude Code (`tests.fake_anthropic`), Codex and opencode (`tests.fake_openai`,
Responses and Chat Completions), Gemini (`tests.fake_gemini`). The Codex, Gemini and opencode
agents are declared the way a user would: ``kind`` and ``base_url`` (and ``model``), no
``command``, so the kind's built-in command (found on ``PATH``, where the lab puts the pinned
CLIs) and pagent's own config of each CLI are what runs. ``pagent-run`` gets a scratch ``HOME``
of its own, so the real home is never touched and can be checked afterwards.

The preflight's one-line prompt is answered "OK" off the script (unless an agent asks for it
to be scripted too), so a script describes the task only.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import tomli_w

from supervisor.agents.preflight import PROMPT as PREFLIGHT_PROMPT
from tests import fake_anthropic
from tests.agent_clis import ensure_agent_cli
from tests.claude_cli import claude_env, ensure_claude_cli
from tests.conftest import GIT_IDENTITY, bin_path
from tests.fake_gemini import SCRIPT_EXHAUSTED as GEMINI_EXHAUSTED
from tests.fake_gemini import GeminiProtocol
from tests.fake_http import Answer, Ids, JsonObject, ScriptedServer, TextReply, WireProtocol
from tests.fake_openai import SCRIPT_EXHAUSTED as OPENAI_EXHAUSTED
from tests.fake_openai import OpenAIProtocol

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from tests.fake_http import Reply, ToolCallReply

PREFLIGHT_MARK = PREFLIGHT_PROMPT.split(":")[0]  # "pagent-run preflight"
FAKE_OPENAI_KEY = "sk-fake-key-for-offline-tests"
FAKE_GEMINI_KEY = "fake-gemini-key-for-offline-tests"
CLAUDE_ARGS = ["-p", "--output-format", "stream-json", "--verbose"]


def require_cli(name: str) -> Path:
    """The pinned CLI ``name`` ("claude", "codex", "gemini", "opencode"), installed on first use.

    Skipped with the reason where npm cannot install it, unless ``PAGENT_REQUIRE_AGENT_CLIS=1``
    (``.ci/run`` sets it): then a missing CLI fails the test.
    """
    if name == "claude":
        found = ensure_claude_cli()
        path, reason = found.path, found.reason
    else:
        cli = ensure_agent_cli(name)
        path, reason = cli.path, cli.reason
    if path is None:
        message = f"{name} CLI unavailable: {reason}"
        if os.environ.get("PAGENT_REQUIRE_AGENT_CLIS") == "1":
            pytest.fail(f"PAGENT_REQUIRE_AGENT_CLIS=1 but {message}")
        pytest.skip(message)
    return path


class PreflightAware:
    """A wire protocol whose preflight requests are side calls answered "OK" (the script is the
    task's); every other request is the inner protocol's."""

    def __init__(self, inner: WireProtocol) -> None:
        self.inner = inner

    @staticmethod
    def is_preflight(body: JsonObject | None) -> bool:
        return PREFLIGHT_MARK in json.dumps(body or {})

    def is_scripted(self, method: str, path: str, body: JsonObject | None) -> bool:
        return self.inner.is_scripted(method, path, body) and not self.is_preflight(body)

    def side_answer(self, method: str, path: str, body: JsonObject | None) -> Answer:
        if self.inner.is_scripted(method, path, body) and body is not None:
            return self.inner.render(TextReply("OK", 10, 1), path, body, Ids())
        return self.inner.side_answer(method, path, body)

    def render(self, reply: TextReply | ToolCallReply, path: str, body: JsonObject, ids: Ids) -> Answer:
        return self.inner.render(reply, path, body, ids)

    def error(self, reply: fake_anthropic.ErrorReply | Any) -> Answer:
        return self.inner.error(reply)

    def opening(self, path: str, body: JsonObject, ids: Ids) -> bytes:
        return self.inner.opening(path, body, ids)


def _not_claude_preflight(method: str, path: str, body: JsonObject | None) -> bool:
    return fake_anthropic.is_scripted_request(method, path, body) and not PreflightAware.is_preflight(body)


class Lab:
    """A repository, a plan beside it and one scripted API per agent, all under ``tmp_path``."""

    def __init__(self, tmp_path: Path, repo: Path, servers: contextlib.ExitStack) -> None:
        self.tmp = tmp_path
        self.repo = repo
        self._servers = servers
        self.agents: dict[str, dict[str, Any]] = {}
        self.plan = tmp_path / "plans" / "plan.toml"
        self.home = tmp_path / "home"  # pagent-run's (and so every CLI's) HOME
        self.home.mkdir(exist_ok=True)
        self._path: list[str] = []
        # A temp dir of its own: the CLIs' scratch files stay here, and Codex makes its sandbox
        # helper only when CODEX_HOME (here under the plan's .pagent/homes) is outside TMPDIR.
        tmpdir = tmp_path / "tmp"
        tmpdir.mkdir(exist_ok=True)
        self.env = {"HOME": str(self.home), "TMPDIR": str(tmpdir), "LANG": "C.UTF-8", **GIT_IDENTITY}

    def _on_path(self, cli: Path) -> None:
        if str(cli.parent) not in self._path:
            self._path.append(str(cli.parent))

    def _server(
        self, protocol: WireProtocol, script: Sequence[Reply], exhausted: Reply, scripted: bool
    ) -> Any:
        wrapped = protocol if scripted else PreflightAware(protocol)
        return self._servers.enter_context(ScriptedServer(wrapped, script, when_exhausted=exhausted))

    def codex(
        self,
        name: str,
        script: Sequence[Reply] = (),
        *,
        when_exhausted: Reply = OPENAI_EXHAUSTED,
        preflight_scripted: bool = False,
        **keys: Any,
    ) -> ScriptedServer:
        """Agent ``name`` of kind codex with its own Responses API; ``keys`` go to its table."""
        self._on_path(require_cli("codex"))
        server = self._server(OpenAIProtocol(), script, when_exhausted, preflight_scripted)
        self.agents[name] = {
            "kind": "codex",
            "base_url": f"{server.url}/v1",
            "model": "gpt-5.5",  # known to Codex: no "model metadata not found" warning
            "env": {"OPENAI_API_KEY": FAKE_OPENAI_KEY},
            **keys,
        }
        return server

    def gemini(
        self,
        name: str,
        script: Sequence[Reply] = (),
        *,
        when_exhausted: Reply = GEMINI_EXHAUSTED,
        preflight_scripted: bool = False,
        **keys: Any,
    ) -> ScriptedServer:
        """Agent ``name`` of kind gemini with its own Gemini API; ``keys`` go to its table."""
        self._on_path(require_cli("gemini"))
        server = self._server(GeminiProtocol(), script, when_exhausted, preflight_scripted)
        self.agents[name] = {
            "kind": "gemini",
            "base_url": server.url,
            "model": "gemini-2.5-flash",  # given, so no model-router call comes first
            "env": {"GEMINI_API_KEY": FAKE_GEMINI_KEY},
            **keys,
        }
        return server

    def opencode(
        self,
        name: str,
        script: Sequence[Reply] = (),
        *,
        when_exhausted: Reply = OPENAI_EXHAUSTED,
        preflight_scripted: bool = False,
        **keys: Any,
    ) -> ScriptedServer:
        """Agent ``name`` of kind opencode with its own Chat Completions API."""
        self._on_path(require_cli("opencode"))
        server = self._server(OpenAIProtocol(), script, when_exhausted, preflight_scripted)
        self.agents[name] = {
            "kind": "opencode",
            "base_url": f"{server.url}/v1",
            "model": "fake-model",
            # models.dev is out of reach offline; the provider lists its one model itself.
            "env": {"OPENAI_API_KEY": FAKE_OPENAI_KEY, "OPENCODE_DISABLE_MODELS_FETCH": "1"},
            **keys,
        }
        return server

    def claude(
        self,
        name: str,
        script: Sequence[fake_anthropic.Reply] = (),
        *,
        when_exhausted: fake_anthropic.Reply | None = None,
        preflight_scripted: bool = False,
        max_retries: int = 2,
    ) -> fake_anthropic.FakeAnthropic:
        """Agent ``name`` of kind claude (the CLI by its path) with its own Messages API."""
        claude = require_cli("claude")
        options: dict[str, Any] = {
            "is_scripted": fake_anthropic.is_scripted_request if preflight_scripted else _not_claude_preflight
        }
        if when_exhausted is not None:
            options["when_exhausted"] = when_exhausted
        server = self._servers.enter_context(fake_anthropic.FakeAnthropic(script, **options))
        home = self.tmp / f"home-{name}"
        home.mkdir()
        self.agents[name] = {
            "command": [str(claude), *CLAUDE_ARGS],
            "kind": "claude",
            "extra_args": ["--permission-mode", "acceptEdits"],
            "env": claude_env(server.url, home, max_retries=max_retries),
        }
        return server

    def write_plan(self, tasks: list[dict[str, Any]], jobs: int = 4, **defaults: Any) -> Path:
        """The plan: these tasks in one wave, quick retries, short timeouts."""
        table = {
            "repo": os.path.relpath(self.repo, self.plan.parent),
            "jobs": jobs,
            "defaults": {
                "retries": 0,
                "retry_delay": "1s",
                "timeout": "3m",
                "kill_grace": "2s",
                "min_free_memory": "1M",
                **defaults,
            },
            "agents": self.agents,
            "waves": [{"name": "one", "tasks": tasks}],
        }
        self.plan.parent.mkdir(exist_ok=True)
        self.plan.write_text(tomli_w.dumps(table))
        return self.plan

    @property
    def run_env(self) -> dict[str, str]:
        """``pagent-run``'s environment: the scratch HOME, the pinned CLIs first on PATH."""
        return {**self.env, "PATH": os.pathsep.join([*self._path, os.environ["PATH"]])}

    def run(self, timeout: float = 300.0, *args: str) -> tuple[subprocess.CompletedProcess[str], float]:
        """Run the plan with the installed ``pagent-run``; the result and its wall time."""
        started = time.monotonic()
        done = subprocess.run(
            [str(bin_path("pagent-run")), str(self.plan), *args],
            env=self.run_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        took = time.monotonic() - started
        print(f"pagent-run exited {done.returncode} in {took:.1f}s")
        print(f"--- stdout\n{done.stdout}--- stderr\n{done.stderr}")
        return done, took

    def pagent(self, *args: str) -> str:
        """An installed ``pagent`` command that must succeed; its stdout."""
        done = subprocess.run(
            [str(bin_path("pagent")), *args],
            env=self.run_env,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def status(self) -> dict[str, Any]:
        view: dict[str, Any] = json.loads(self.pagent("status", str(self.plan), "--json"))
        return view

    def tasks(self) -> dict[str, dict[str, Any]]:
        return {task["id"]: task for task in self.status()["tasks"]}

    def log(self, task: str) -> str:
        return self.pagent("logs", str(self.plan), task)


@contextlib.contextmanager
def lab_in(tmp_path: Path, repo: Path) -> Iterator[Lab]:
    """A `Lab` whose servers are closed when the block ends."""
    with contextlib.ExitStack() as servers:
        yield Lab(tmp_path, repo, servers)


def scripted(server: ScriptedServer) -> list[Any]:
    """The requests of ``server`` that consumed its script (the preflight's not among them)."""
    return [r for r in server.log if r.script_index is not None]
