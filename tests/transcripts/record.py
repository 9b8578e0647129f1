"""Regenerate the stream-json transcripts in this folder from real runs of the Claude Code CLI.

Run from the repository root: ``python -m tests.transcripts.record [NAME ...]``.  Each
scenario drives the real CLI (installed by `ensure_claude_cli`) against `FakeAnthropic` on
127.0.0.1 and writes ``NAME.jsonl`` (the CLI's stdout, byte for byte) and ``NAME.meta.json``
(exit code, duration, stderr, environment overrides and the requests the server received).
Recording all of them takes about a minute, most of it the stall scenario's watchdog.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.claude_cli import CLAUDE_CODE_VERSION, FAKE_API_KEY, claude_env, ensure_claude_cli, run_claude
from tests.fake_anthropic import (
    SCRIPT_EXHAUSTED,
    ErrorReply,
    FakeAnthropic,
    SilentReply,
    StallReply,
    TextReply,
    run_bash,
    usage_limit_reply,
    write_file,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tests.fake_anthropic import Reply

HERE = Path(__file__).resolve().parent
ACCEPT_EDITS = ("--permission-mode", "acceptEdits")
PROMPT = "Create hello.txt saying hello, then say what you did."


@dataclass(frozen=True)
class Scenario:
    """One recorded run: the script the fake API follows and how the CLI is started."""

    name: str
    description: str
    script: Sequence[Reply]
    when_exhausted: Reply = SCRIPT_EXHAUSTED
    args: Sequence[str] = ACCEPT_EDITS
    max_retries: int = 2
    api_key: bool = True
    oauth_token: bool = False
    extra_env: Mapping[str, str] = field(default_factory=dict)


def _scenarios() -> list[Scenario]:
    in_an_hour = int(time.time()) + 3600
    return [
        Scenario(
            "success-write-tool",
            "Write tool call, then a final text: the file is created, result success.",
            [write_file("hello.txt", "hello\n"), TextReply("I created hello.txt.")],
        ),
        Scenario(
            "retry-then-success",
            "One 500, retried, then a Write and a final text: api_retry then success.",
            [ErrorReply(500, "boom"), write_file("hello.txt", "hello\n"), TextReply("Done.")],
        ),
        Scenario(
            "is-error-400",
            "Every request gets 400: no api_retry, but the CLI resends with fewer betas.",
            [],
            when_exhausted=ErrorReply(400, "messages.0: bad request"),
        ),
        Scenario(
            "api-retry-storm-then-error",
            "Every request gets 500; CLAUDE_CODE_MAX_RETRIES=3: three api_retry, then error.",
            [],
            when_exhausted=ErrorReply(500, "Internal server error"),
            max_retries=3,
        ),
        Scenario(
            "overloaded-529",
            "Every request gets 529 with MAX_RETRIES=5: the CLI stops after 3 attempts.",
            [],
            when_exhausted=ErrorReply(529, "Overloaded"),
            max_retries=5,
        ),
        Scenario(
            "rate-limit-429",
            "Every request gets a plain 429 with an API key: retried like a 5xx.",
            [],
            when_exhausted=ErrorReply(429, "Number of request tokens has exceeded your rate limit"),
        ),
        Scenario(
            "usage-limit-429",
            "Subscription token and a 429 with unified rate-limit headers: no retry, "
            "'You've hit your 5-hour limit · resets …'.",
            [],
            when_exhausted=usage_limit_reply(in_an_hour),
            api_key=False,
            oauth_token=True,
        ),
        Scenario(
            "auth-invalid-key-401",
            "Every request gets 401: retried, then 'Invalid API key'.",
            [],
            when_exhausted=ErrorReply(401, "invalid x-api-key"),
        ),
        Scenario(
            "auth-no-credentials",
            "No API key or token at all, throwaway HOME: 'Not logged in', no request made.",
            [],
            api_key=False,
        ),
        Scenario(
            "permission-denial",
            "Bash call that writes a file, default permission mode: denied, run still succeeds.",
            [run_bash("touch made-by-bash.txt"), TextReply("I could not run the command.")],
            args=(),
        ),
        Scenario(
            "max-turns",
            "Write tool call under --max-turns 1: the tool runs, then result error_max_turns.",
            [write_file("hello.txt", "hello\n"), TextReply("Never sent.")],
            args=(*ACCEPT_EDITS, "--max-turns", "1"),
        ),
        Scenario(
            "silent-api-timeout",
            "The API never answers; API_TIMEOUT_MS=2000, MAX_RETRIES=1: timeout, retry, error.",
            [],
            when_exhausted=SilentReply(),
            max_retries=1,
            extra_env={"API_TIMEOUT_MS": "2000"},
        ),
        Scenario(
            "stall-byte-watchdog",
            "Stream stops after message_start; byte watchdog at 10 s: non-streaming fallback, "
            "then 'stream idle' error.",
            [],
            when_exhausted=StallReply(),
            extra_env={
                "CLAUDE_ENABLE_BYTE_WATCHDOG": "1",
                "CLAUDE_BYTE_STREAM_IDLE_TIMEOUT_MS": "10000",
            },
        ),
    ]


def _request_summary(server: FakeAnthropic, started: float) -> list[dict[str, Any]]:
    return [
        {
            "at_s": round(record.received_at - started, 2),
            "method": record.method,
            "path": record.path,
            "script_index": record.script_index,
            "model": (record.body or {}).get("model"),
            "stream": (record.body or {}).get("stream"),
            "anthropic_beta": record.headers.get("anthropic-beta"),
        }
        for record in server.log
    ]


def record(scenario: Scenario, claude: Path) -> dict[str, Any]:
    """Run `scenario` once and write its transcript and metadata; return the metadata."""
    with (
        tempfile.TemporaryDirectory(prefix="pagent-transcript-") as scratch,
        FakeAnthropic(scenario.script, when_exhausted=scenario.when_exhausted) as server,
    ):
        home, work = Path(scratch) / "home", Path(scratch) / "work"
        home.mkdir()
        work.mkdir()
        env = claude_env(
            server.url,
            home,
            api_key=FAKE_API_KEY if scenario.api_key else None,
            oauth_token="sk-ant-oat01-fake-token" if scenario.oauth_token else None,
            max_retries=scenario.max_retries,
        ) | dict(scenario.extra_env)
        started = time.monotonic()
        run = run_claude(claude, prompt=PROMPT, cwd=work, env=env, args=scenario.args, timeout_s=120)
        meta = {
            "description": scenario.description,
            "claude_code_version": CLAUDE_CODE_VERSION,
            "argv_extra": list(scenario.args),
            "env_overrides": {
                key: value
                for key, value in env.items()
                if key not in {"PATH", "HOME", "LANG", "ANTHROPIC_BASE_URL"}
            },
            "exit_code": run.returncode,
            "timed_out": run.timed_out,
            "elapsed_s": round(run.elapsed_s, 2),
            "stderr": run.stderr,
            "event_types": [
                f"{event.get('type')}/{event.get('subtype', '')}".rstrip("/") for event in run.events
            ],
            "files_created": sorted(str(path.relative_to(work)) for path in work.rglob("*")),
            "requests": _request_summary(server, started),
        }
    (HERE / f"{scenario.name}.jsonl").write_text(run.stdout)
    (HERE / f"{scenario.name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(names: Sequence[str]) -> int:
    """Record the named scenarios (all when none is named); return a process exit code."""
    cli = ensure_claude_cli()
    if cli.path is None:
        print(f"cannot record: {cli.reason}", file=sys.stderr)
        return 1
    scenarios = [scenario for scenario in _scenarios() if not names or scenario.name in names]
    unknown = set(names) - {scenario.name for scenario in scenarios}
    if unknown:
        print(f"unknown scenario(s): {', '.join(sorted(unknown))}", file=sys.stderr)
        return 2
    for scenario in scenarios:
        meta = record(scenario, cli.path)
        print(
            f"{scenario.name}: exit {meta['exit_code']} in {meta['elapsed_s']} s, "
            f"{len(meta['requests'])} request(s), {' '.join(meta['event_types'])}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
