"""The codex, gemini and opencode kinds as objects: built-in agents, argv, setup, plan checks.

What each kind turns the plan's keys into (the CLI's flags, environment, config files and kept
directory) is checked here without a process; that the CLIs really obey it is the business of
``tests/test_agents_e2e.py`` and ``tests/test_agent_kinds_e2e.py``.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import replace
from types import MappingProxyType
from typing import Any

import pytest

from supervisor.agents import preflight as preflight_module
from supervisor.agents.base import NO_SETUP
from supervisor.agents.codex_kind import CodexKind
from supervisor.agents.gemini_kind import GeminiKind
from supervisor.agents.opencode_kind import OpencodeKind
from supervisor.agents.registry import KINDS
from supervisor.plan.model import AgentSpec, TaskSettings
from supervisor.seam import AGENT_HOME, ATTEMPT_DIR, AttemptKey

URL = "http://127.0.0.1:8000/v1"


def agent(kind: str, **keys: Any) -> AgentSpec:
    """Agent ``a`` of ``kind`` with the kind's built-in command and the given plan keys."""
    return replace(KINDS.catalog().agents[kind], name="a", **keys)


def test_registry_has_the_kinds_and_their_built_in_agents() -> None:
    """Each kind brings an agent of its name whose command carries the headless flags."""
    agents = KINDS.catalog().agents
    assert agents["codex"].command == ("codex", "exec", "--json", "-s", "workspace-write")
    assert agents["gemini"].command == ("gemini", "--output-format", "stream-json", "--yolo", "--skip-trust")
    assert agents["opencode"].command == ("opencode", "run", "--format", "json")
    for name in ("codex", "gemini", "opencode"):
        assert (agents[name].kind, agents[name].preflight) == (name, True)
        assert KINDS.catalog().kinds[name].default_command == agents[name].command


def codex_table(argv: tuple[str, ...]) -> dict[str, Any]:
    """The provider table the argv gives Codex with ``-c model_providers.pagent=...``, parsed."""
    (value,) = [arg.partition("=")[2] for arg in argv if arg.startswith("model_providers.pagent=")]
    table: dict[str, Any] = tomllib.loads(f"t = {value}")["t"]
    return table


def test_codex_base_url_becomes_a_bounded_provider_on_the_command_line() -> None:
    """base_url -> pagent's provider via -c (the user's config.toml is never written), with the
    retry and idle bounds inside the provider table, where Codex reads them."""
    settings = TaskSettings(extra_args=("--task-flag",))
    argv = CodexKind().argv(agent("codex", base_url=URL, model="gpt-5.5", extra_args=("-x",)), settings, None)
    assert argv[:5] == ("codex", "exec", "--json", "-s", "workspace-write")
    assert argv[5:9] == ("-m", "gpt-5.5", "-c", "model_provider=pagent")
    assert argv[-2:] == ("-x", "--task-flag")  # the plan's own flags come last: they win
    assert codex_table(argv) == {
        "name": "pagent",
        "base_url": URL,
        "env_key": "OPENAI_API_KEY",
        "wire_api": "responses",
        "request_max_retries": 2,
        "stream_max_retries": 1,
        "stream_idle_timeout_ms": 300_000,
    }
    idle = CodexKind().argv(agent("codex", base_url=URL, idle_timeout=7.5), TaskSettings(), None)
    assert codex_table(idle)["stream_idle_timeout_ms"] == 7500


def test_codex_without_base_url_adds_only_the_model() -> None:
    argv = CodexKind().argv(agent("codex", model="o3"), TaskSettings(), None)
    assert argv == ("codex", "exec", "--json", "-s", "workspace-write", "-m", "o3")


def test_codex_home() -> None:
    """home = "own" (the default with base_url): CODEX_HOME is the agent's kept directory."""
    kind = CodexKind()
    assert kind.setup(agent("codex"), TaskSettings()) is NO_SETUP
    own = kind.setup(agent("codex", base_url=URL), TaskSettings())
    assert (dict(own.env), own.home, dict(own.files)) == ({"CODEX_HOME": AGENT_HOME}, "a", {})
    assert kind.setup(agent("codex", base_url=URL, home="user"), TaskSettings()) is NO_SETUP


def test_codex_checks() -> None:
    kind = CodexKind()
    with pytest.raises(ValueError, match="--full-auto no longer exists"):
        kind.check_args(["codex", "exec", "--full-auto"])
    assert kind.check_agent(agent("codex", base_url=URL, idle_timeout=5.0)) is None
    problem = kind.check_agent(agent("codex", idle_timeout=5.0))
    assert problem is not None
    assert problem[0] == "idle_timeout"
    assert "needs base_url" in problem[1]


def settings_file(setup_files: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(setup_files["gemini/.gemini/settings.json"])
    return data


def test_gemini_own_home_carries_its_settings_fresh_per_attempt() -> None:
    """base_url: GOOGLE_GEMINI_BASE_URL, API-key auth and maxAttempts in a settings.json of the
    attempt's own directory, found through GEMINI_CLI_HOME (HOME stays the user's)."""
    setup = GeminiKind().setup(agent("gemini", base_url="http://127.0.0.1:9"), TaskSettings())
    assert dict(setup.env) == {
        "GOOGLE_GEMINI_BASE_URL": "http://127.0.0.1:9",
        "GEMINI_CLI_HOME": f"{ATTEMPT_DIR}/gemini",
    }
    assert settings_file(setup.files) == {
        "general": {"maxAttempts": 3},
        "security": {"auth": {"selectedType": "gemini-api-key"}},
    }
    assert setup.home is None
    own = GeminiKind().setup(agent("gemini", home="own"), TaskSettings())
    assert settings_file(own.files) == {"general": {"maxAttempts": 3}}
    user = GeminiKind().setup(agent("gemini"), TaskSettings())
    assert (dict(user.env), dict(user.files)) == ({}, {})


def test_gemini_argv_and_checks() -> None:
    kind = GeminiKind()
    assert kind.argv(agent("gemini", model="gemini-2.5-pro"), TaskSettings(), None)[-2:] == (
        "-m",
        "gemini-2.5-pro",
    )
    for bad in (["--output-format", "json"], ["-o", "text"], ["--output-format=json"]):
        with pytest.raises(ValueError, match="reads --output-format stream-json only"):
            kind.check_args(["gemini", *bad])
    kind.check_args(["gemini", "--output-format", "stream-json"])
    with pytest.raises(ValueError, match="headless"):
        kind.check_args(["gemini", "-i"])
    assert kind.check_agent(agent("gemini", base_url=URL, home="user")) == (
        "home",
        'a base_url needs home = "own": Gemini must be told to use API-key auth in its settings.json, '
        "and pagent writes none into the user's home",
    )
    idle = kind.check_agent(agent("gemini", idle_timeout=3.0))
    assert idle is not None
    assert idle[0] == "idle_timeout"


def test_opencode_base_url_becomes_a_provider_in_its_own_config_file() -> None:
    """base_url + model: pagent's openai-compatible provider with the idle bounds, in
    opencode.json of the attempt's directory (OPENCODE_CONFIG), the key by reference only."""
    setup = OpencodeKind().setup(agent("opencode", base_url=URL, model="m1"), TaskSettings())
    assert dict(setup.env) == {
        "OPENCODE_PRINT_LOGS": "1",
        "OPENCODE_LOG_LEVEL": "ERROR",
        "OPENCODE_DISABLE_AUTOUPDATE": "1",
        "OPENCODE_CONFIG": f"{ATTEMPT_DIR}/opencode.json",
        "XDG_CONFIG_HOME": f"{AGENT_HOME}/config",
        "XDG_DATA_HOME": f"{AGENT_HOME}/data",
        "XDG_CACHE_HOME": f"{AGENT_HOME}/cache",
        "XDG_STATE_HOME": f"{AGENT_HOME}/state",
        "npm_config_cache": f"{AGENT_HOME}/npm",
    }
    assert setup.home == "a"
    config = json.loads(setup.files["opencode.json"])
    assert config["model"] == config["small_model"] == "pagent/m1"
    provider = config["provider"]["pagent"]
    assert provider["npm"] == "@ai-sdk/openai-compatible"
    assert provider["options"] == {
        "baseURL": URL,
        "apiKey": "{env:OPENAI_API_KEY}",
        "headerTimeout": 120_000,
        "chunkTimeout": 300_000,
    }
    assert provider["models"] == {"m1": {"name": "m1", "tool_call": True}}
    assert OpencodeKind().argv(agent("opencode", base_url=URL, model="m1"), TaskSettings(), None) == (
        "opencode",
        "run",
        "--format",
        "json",
    )


def test_opencode_without_base_url_bounds_the_named_provider_in_the_users_home() -> None:
    kind = OpencodeKind()
    chosen = agent("opencode", model="anthropic/claude-x", idle_timeout=60.0)
    setup = kind.setup(chosen, TaskSettings())
    assert setup.home is None  # home = "user": no XDG directories of pagent's
    assert "XDG_CONFIG_HOME" not in setup.env
    assert json.loads(setup.files["opencode.json"]) == {
        "provider": {"anthropic": {"options": {"headerTimeout": 60_000, "chunkTimeout": 60_000}}}
    }
    assert kind.argv(chosen, TaskSettings(), None)[-2:] == ("--model", "anthropic/claude-x")
    bare = kind.setup(agent("opencode"), TaskSettings())
    assert (dict(bare.files), "OPENCODE_CONFIG" in bare.env) == ({}, False)


def test_opencode_checks() -> None:
    kind = OpencodeKind()
    missing = kind.check_agent(agent("opencode", base_url=URL))
    assert missing is not None
    assert missing[0] == "model"
    wrong = kind.check_agent(agent("opencode", model="gpt-5"))
    assert wrong == ("model", "expected 'provider/model' (opencode's form), got 'gpt-5'")
    with pytest.raises(ValueError, match="reads --format json only"):
        kind.check_args(["opencode", "run", "--format", "default"])
    with pytest.raises(ValueError, match="headless"):
        kind.check_args(["opencode", "run", "--interactive"])


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("kind", "extra"),
    [(CodexKind(), "--skip-git-repo-check"), (GeminiKind(), None), (OpencodeKind(), None)],
)
async def test_preflight_prompt_runs_without_the_clis_own_retries(
    kind: Any, extra: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The preflight's prompt gets the kind's argv and setup with no retries of the CLI's own,
    two tries of its own, and a fresh parser per try."""
    seen: dict[str, Any] = {}

    async def fake_run_preflight(*args: Any, **kwargs: Any) -> str:
        seen.update(kwargs, parser=args[3])
        return "1.0"

    monkeypatch.setattr(preflight_module, "run_preflight", fake_run_preflight)
    spec = agent(kind.name, base_url="http://127.0.0.1:9/v1", model="m")
    key = AttemptKey("p", "preflight", "a", 1)
    assert await kind.preflight(spec, None, key, max_wait=0, notice=lambda _: None) == "1.0"
    assert seen["tries"] == 2
    assert seen["new_parser"]() is not seen["new_parser"]()
    argv = seen["argv"]
    if extra:
        assert extra in argv
    if kind.name == "codex":
        assert (codex_table(argv)["request_max_retries"], codex_table(argv)["stream_max_retries"]) == (0, 0)
    if kind.name == "gemini":
        assert settings_file(seen["setup"].files)["general"] == {"maxAttempts": 1}
    if kind.name != "gemini":  # Gemini's preflight settings differ: maxAttempts 1
        assert seen["setup"] == kind.setup(spec, TaskSettings())


def test_built_in_agents_have_no_env() -> None:
    for name in ("codex", "gemini", "opencode"):
        assert KINDS.catalog().agents[name].env == MappingProxyType({})
