"""Prove the offline harness for the other agent CLIs: each real CLI edits a file for a scripted API.

Each test installs its pinned CLI with npm on first use (``tests/agent_clis.py``; skipped, with
the reason shown, only when that cannot be done), starts the scripted server of the CLI's wire
protocol on 127.0.0.1, runs the CLI headless with stdin closed in a fresh HOME/TMPDIR/XDG under
`tmp_path`, and checks what really happened: the file on disk, the tool result the CLI sent
back to the server, the session id and the token counts in the CLI's own events.
"""

from __future__ import annotations

import json
import subprocess
from typing import TYPE_CHECKING, Any

import pytest

from tests.agent_clis import AgentRun, run_agent
from tests.agent_envs import codex_launch, gemini_launch, opencode_launch
from tests.agent_lab import require_cli
from tests.fake_gemini import FakeGemini
from tests.fake_http import TextReply, ToolCallReply
from tests.fake_openai import FakeOpenAI

if TYPE_CHECKING:
    from pathlib import Path

    from tests.fake_http import Reply, ScriptedServer

PROMPT = "Create hello.txt saying hello."
# Generous next to the measured run times (1-7 s) so that a loaded machine does not flake.
RUN_TIMEOUT_S = 90.0
# The first test on a machine may install ~400 MB from npm.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1200)]


def _cli(name: str) -> Path:
    """The pinned CLI, or a skip naming why (a failure with ``PAGENT_REQUIRE_AGENT_CLIS=1``)."""
    return require_cli(name)


def _workdir(tmp_path: Path) -> Path:
    work = tmp_path / "work"
    work.mkdir()
    # Codex refuses to run outside a git repository unless told otherwise.
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    return work


def _finish(run: AgentRun, server: ScriptedServer, work: Path) -> None:
    """Common checks: a clean exit, the file written, the script used up."""
    assert not run.timed_out, f"still running after {RUN_TIMEOUT_S} s: {run.stdout[-2000:]}"
    assert run.returncode == 0, f"exit {run.returncode}: {run.stderr[-2000:]}"
    assert (work / "hello.txt").read_text() == "hello\n"
    assert server.remaining == 0, f"the CLI stopped early: {run.stdout[-2000:]}"


def _of_type(run: AgentRun, kind: str) -> list[dict[str, Any]]:
    return [event for event in run.events if event.get("type") == kind]


def test_codex_writes_a_file(tmp_path: Path) -> None:
    """``codex exec --json -s workspace-write`` runs ``exec_command`` and reports thread and usage."""
    codex = _cli("codex")
    work = _workdir(tmp_path)
    script: list[Reply] = [
        ToolCallReply("exec_command", {"cmd": "printf 'hello\\n' > hello.txt"}, call_id="call_smoke"),
        TextReply("I created hello.txt.", input_tokens=120, output_tokens=30),
    ]
    with FakeOpenAI(script) as server:
        launch = codex_launch(codex, server.base_url, tmp_path, work, prompt=PROMPT)
        run = run_agent(launch.argv, cwd=work, env=launch.env, timeout_s=RUN_TIMEOUT_S)
        _finish(run, server, work)
        sent_back = [
            item for item in server.requests[1]["input"] if item.get("type") == "function_call_output"
        ]
    assert [item["call_id"] for item in sent_back] == ["call_smoke"]
    assert "exited with code 0" in sent_back[0]["output"]
    (started,) = _of_type(run, "thread.started")
    assert started["thread_id"]
    commands = [
        e["item"] for e in _of_type(run, "item.completed") if e["item"]["type"] == "command_execution"
    ]
    assert [(c["exit_code"], c["status"]) for c in commands] == [(0, "completed")]
    (completed,) = _of_type(run, "turn.completed")
    # Summed over the turn's two requests: 100 + 120 in, 20 + 30 out.
    assert (completed["usage"]["input_tokens"], completed["usage"]["output_tokens"]) == (220, 50)


def test_gemini_writes_a_file(tmp_path: Path) -> None:
    """``gemini -p --output-format stream-json --yolo`` calls ``write_file`` and reports its stats."""
    gemini = _cli("gemini")
    work = _workdir(tmp_path)
    script: list[Reply] = [
        ToolCallReply("write_file", {"file_path": "hello.txt", "content": "hello\n"}),
        TextReply("I created hello.txt.", input_tokens=120, output_tokens=30),
    ]
    with FakeGemini(script) as server:
        launch = gemini_launch(gemini, server.url, tmp_path, work, prompt=PROMPT)
        run = run_agent(launch.argv, cwd=work, env=launch.env, timeout_s=RUN_TIMEOUT_S)
        _finish(run, server, work)
        parts = [part for content in server.requests[1]["contents"] for part in content.get("parts", [])]
    assert any(part.get("functionResponse", {}).get("name") == "write_file" for part in parts)
    (init,) = _of_type(run, "init")
    assert init["session_id"]
    assert [e["status"] for e in _of_type(run, "tool_result")] == ["success"]
    (result,) = _of_type(run, "result")
    assert result["status"] == "success"
    assert (result["stats"]["input_tokens"], result["stats"]["output_tokens"]) == (220, 50)


def test_opencode_writes_a_file(tmp_path: Path) -> None:
    """``opencode run --format json`` calls ``write`` and reports tokens and cost per step."""
    opencode = _cli("opencode")
    work = _workdir(tmp_path)
    script: list[Reply] = [
        ToolCallReply("write", {"filePath": "hello.txt", "content": "hello\n"}, call_id="call_smoke"),
        TextReply("I created hello.txt.", input_tokens=120, output_tokens=30),
    ]
    with FakeOpenAI(script) as server:
        launch = opencode_launch(opencode, server.base_url, tmp_path, work, prompt=PROMPT)
        run = run_agent(launch.argv, cwd=work, env=launch.env, timeout_s=RUN_TIMEOUT_S)
        _finish(run, server, work)
        tool_messages = [m for m in server.requests[1]["messages"] if m.get("role") == "tool"]
    assert [m["tool_call_id"] for m in tool_messages] == ["call_smoke"]
    sessions = {str(event.get("sessionID")) for event in run.events}
    assert len(sessions) == 1
    assert next(iter(sessions)).startswith("ses_")
    tools = [e["part"]["state"]["status"] for e in _of_type(run, "tool_use")]
    assert tools == ["completed"]
    steps = [e["part"] for e in _of_type(run, "step_finish")]
    assert [step["reason"] for step in steps] == ["tool-calls", "stop"]
    assert [(s["tokens"]["input"], s["tokens"]["output"]) for s in steps] == [(100, 20), (120, 30)]
    # $3 / $15 per million tokens, as the launch configures.
    assert sum(step["cost"] for step in steps) == pytest.approx((220 * 3 + 50 * 15) / 1e6)
    assert json.loads(launch.config_files["$OPENCODE_CONFIG"])["permission"]["edit"] == "allow"
