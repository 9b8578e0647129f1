"""Prove the offline harness: the real Claude Code CLI against the scripted Messages API.

Tests marked ``claude`` run the CLI; they are skipped, with the reason shown, when the CLI cannot
be installed (no npm, no registry).  Every CLI run is bounded by a timeout.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.claude_cli import ClaudeRun, claude_env, ensure_claude_cli, run_claude
from tests.fake_anthropic import (
    ErrorReply,
    FakeAnthropic,
    SilentReply,
    TextReply,
    run_bash,
    write_file,
)

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

if TYPE_CHECKING:
    from collections.abc import Mapping

TRANSCRIPTS = Path(__file__).parent / "transcripts"
# Generous next to the measured run times (0.5-3 s) so a loaded CI machine does not flake.
RUN_TIMEOUT_S = 60.0


@pytest.fixture(scope="session")
def claude() -> Path:
    """Return the installed CLI, or skip the test saying why there is none."""
    cli = ensure_claude_cli()
    if cli.path is None:
        pytest.skip(f"Claude Code CLI unavailable: {cli.reason}")
    return cli.path


def _run(
    claude: Path,
    server: FakeAnthropic,
    tmp_path: Path,
    *,
    args: tuple[str, ...] = ("--permission-mode", "acceptEdits"),
    max_retries: int = 2,
    extra_env: Mapping[str, str] | None = None,
) -> ClaudeRun:
    """Run the CLI in a fresh working directory and HOME under `tmp_path`."""
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    env = claude_env(server.url, home, max_retries=max_retries) | dict(extra_env or {})
    run = run_claude(claude, prompt="Do the task.", cwd=work, env=env, args=args, timeout_s=RUN_TIMEOUT_S)
    assert not run.timed_out, f"CLI still running after {RUN_TIMEOUT_S} s: {run.stdout[-2000:]}"
    return run


def _types(run: ClaudeRun) -> list[str]:
    return [f"{event['type']}/{event.get('subtype', '')}".rstrip("/") for event in run.events]


@pytest.mark.claude
def test_write_tool_then_text_succeeds(claude: Path, tmp_path: Path) -> None:
    """A Write tool call then a text reply creates the file and ends in a successful result."""
    with FakeAnthropic(
        [write_file("hello.txt", "hello from the fake API\n"), TextReply("Wrote hello.txt.")]
    ) as server:
        run = _run(claude, server, tmp_path)
        bodies = server.requests
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "work" / "hello.txt").read_text() == "hello from the fake API\n"
    result = run.result
    assert result is not None
    assert result["subtype"] == "success"
    assert result["is_error"] is False
    assert result["num_turns"] == 2
    assert result["total_cost_usd"] > 0
    assert result["result"] == "Wrote hello.txt."
    assert result["session_id"] == run.events[0]["session_id"]
    assert _types(run)[0] == "system/init"
    # The second request carries the tool's outcome back to the model.
    assert len(bodies) == 2
    last = bodies[1]["messages"][-1]["content"]
    assert any(block.get("type") == "tool_result" for block in last)


@pytest.mark.claude
def test_http_400_ends_run_with_is_error(claude: Path, tmp_path: Path) -> None:
    """A 400 is not retried with delays: the result has is_error and the status, exit 1."""
    # The CLI resends a 400'd turn with fewer beta features (six requests in all), so every
    # request must get the 400, not just the first.
    with FakeAnthropic([], when_exhausted=ErrorReply(400, "bad request")) as server:
        run = _run(claude, server, tmp_path)
    assert run.returncode == 1
    result = run.result
    assert result is not None
    assert result["is_error"] is True
    assert result["api_error_status"] == 400
    assert "system/api_retry" not in _types(run)
    assert run.elapsed_s < 10


@pytest.mark.claude
def test_5xx_is_retried_with_api_retry_events(claude: Path, tmp_path: Path) -> None:
    """Each 500 before the last is reported as an api_retry event, up to the retry bound."""
    with FakeAnthropic([ErrorReply(500, "boom")] * 3) as server:
        run = _run(claude, server, tmp_path, max_retries=2)
        served = len(server.requests)
    retries = [event for event in run.events if event.get("subtype") == "api_retry"]
    assert [event["attempt"] for event in retries] == [1, 2]
    assert all(event["error_status"] == 500 for event in retries)
    assert all(event["max_retries"] == 2 for event in retries)
    assert retries[0]["retry_delay_ms"] < retries[1]["retry_delay_ms"]
    assert served == 3
    result = run.result
    assert result is not None
    assert result["is_error"] is True
    assert result["api_error_status"] == 500
    assert run.returncode == 1


@pytest.mark.claude
def test_silent_connection_hits_api_timeout(claude: Path, tmp_path: Path) -> None:
    """A request that is never answered ends in a timeout result once API_TIMEOUT_MS passes."""
    with FakeAnthropic([], when_exhausted=SilentReply()) as server:
        run = _run(claude, server, tmp_path, max_retries=0, extra_env={"API_TIMEOUT_MS": "2000"})
    result = run.result
    assert result is not None
    assert result["is_error"] is True
    assert "timed out" in result["result"]
    assert run.returncode == 1
    assert 2.0 <= run.elapsed_s < 15


@pytest.mark.claude
def test_denied_bash_call_is_listed_in_permission_denials(claude: Path, tmp_path: Path) -> None:
    """In the default mode a file-changing Bash call is denied, yet the run succeeds."""
    with FakeAnthropic([run_bash("touch made-by-bash.txt"), TextReply("Gave up.")]) as server:
        run = _run(claude, server, tmp_path, args=())
    assert run.returncode == 0
    assert not (tmp_path / "work" / "made-by-bash.txt").exists()
    result = run.result
    assert result is not None
    assert result["is_error"] is False
    assert [denial["tool_name"] for denial in result["permission_denials"]] == ["Bash"]


def _post(url: str, body: dict[str, Any], path: str = "/v1/messages?beta=true") -> str:
    request = urllib.request.Request(
        url + path, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.read().decode())


def test_side_requests_do_not_consume_the_script() -> None:
    """Token counting, quota probes and tool-less haiku calls are answered off-script."""
    with FakeAnthropic([TextReply("scripted")]) as server:
        _post(server.url, {"model": "claude-x"}, path="/v1/messages/count_tokens")
        _post(server.url, {"model": "claude-x", "max_tokens": 1, "messages": []})
        _post(server.url, {"model": "claude-haiku-4-5", "max_tokens": 512, "messages": []})
        assert server.remaining == 1
        answer = _post(
            server.url,
            {
                "model": "claude-x",
                "max_tokens": 9,
                "stream": True,
                "tools": [{"name": "Write"}],
                "messages": [],
            },
        )
        assert server.remaining == 0
        assert len(server.log) == 4
        assert [record.script_index for record in server.log] == [None, None, None, 0]
    events = [line.removeprefix("event: ") for line in answer.splitlines() if line.startswith("event: ")]
    assert events == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]


def test_error_reply_has_anthropic_error_body() -> None:
    """An ErrorReply answers with its status and an Anthropic-style error object."""
    with FakeAnthropic([ErrorReply(529, "Overloaded")]) as server:
        with pytest.raises(urllib.error.HTTPError) as caught:
            _post(server.url, {"model": "claude-x", "stream": True, "messages": []})
        error = caught.value
        body = json.loads(error.read())
        error.close()
    assert error.code == 529
    assert body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


def test_close_releases_a_silent_connection() -> None:
    """A SilentReply holds the request unanswered; closing the server ends the connection."""
    server = FakeAnthropic([SilentReply()])
    request = urllib.request.Request(server.url + "/v1/messages", data=b"{}")
    try:
        # The short client timeout proves the server holds the request without answering.
        with pytest.raises(TimeoutError):
            urllib.request.urlopen(request, timeout=0.5)
    finally:
        server.close()
    assert server.remaining == 0
    assert server.log[0].script_index == 0


def test_missing_npm_is_reported_not_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without npm on PATH, ensure_claude_cli returns no path and says why."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    cli = ensure_claude_cli(tmp_path / "cache")
    assert cli.path is None
    assert "npm" in cli.reason


@pytest.mark.parametrize("transcript", sorted(TRANSCRIPTS.glob("*.jsonl")), ids=lambda path: path.stem)
def test_transcripts_are_stream_json_ending_in_one_result(transcript: Path) -> None:
    """Each recorded transcript is JSON lines from system/init to a single final result."""
    events = [json.loads(line) for line in transcript.read_text().splitlines()]
    assert events[0]["type"] == "system"
    assert events[0]["subtype"] == "init"
    assert events[-1]["type"] == "result"
    assert sum(event["type"] == "result" for event in events) == 1
