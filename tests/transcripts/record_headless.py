"""Record the transcripts of Claude Code's headless features in ``claude-headless/``.

Run from the repository root: ``python -m tests.transcripts.record_headless [NAME ...]``. Like
``tests.transcripts.record`` (whose scenario type and request summary it uses), each scenario
drives the real CLI against ``FakeAnthropic`` on 127.0.0.1 and writes ``NAME.jsonl`` (stdout,
byte for byte) and ``NAME.meta.json``. These cover what pagent passes beside the prompt:
``--json-schema`` (a structured result), ``--fallback-model`` (the switch after overloaded
answers, and ``modelUsage`` naming the model that answered), ``--mcp-config`` with servers that
cannot start (``mcp_servers`` of the init event) and ``--session-id``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.claude_cli import CLAUDE_CODE_VERSION, claude_env, ensure_claude_cli, run_claude
from tests.fake_anthropic import ErrorReply, FakeAnthropic, TextReply, structured_output, write_file
from tests.transcripts.record import ACCEPT_EDITS, PROMPT, Scenario, _request_summary

HERE = Path(__file__).resolve().parent / "claude-headless"
SESSION = "7d1f3c2a-5b6e-4f80-9a1b-2c3d4e5f6a7b"  # the --session-id the scenarios pass
SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["done", "nothing_to_do", "needs_input", "failed"]},
        "question": {"type": "string"},
    },
    "required": ["status"],
}
BROKEN_MCP = {
    "mcpServers": {
        "missing": {"command": "/nonexistent/mcp-server"},
        "dies": {"command": "python3", "args": ["-c", "raise SystemExit(3)"]},
    }
}


def scenarios() -> list[Scenario]:
    """The recorded runs."""
    return [
        Scenario(
            "structured-needs-input",
            "--json-schema and --session-id: the model calls StructuredOutput with status "
            "needs_input and a question; the result carries structured_output.",
            [structured_output(status="needs_input", question="SQLite or PostgreSQL?")],
            args=(*ACCEPT_EDITS, "--json-schema", json.dumps(SCHEMA), "--session-id", SESSION),
        ),
        Scenario(
            "structured-done-after-write",
            "--json-schema: a Write, then StructuredOutput with status done.",
            [write_file("hello.txt", "hello\n"), structured_output(status="done")],
            args=(*ACCEPT_EDITS, "--json-schema", json.dumps(SCHEMA)),
        ),
        Scenario(
            "model-fallback",
            "--model m --fallback-model f: three 529s for m, system/model_fallback, then f "
            "answers; modelUsage names only f.",
            [ErrorReply(529, "Overloaded")] * 3 + [TextReply("Answered by the fallback.")],
            args=(*ACCEPT_EDITS, "--model", "claude-main-1", "--fallback-model", "claude-fallback-1"),
            max_retries=5,
        ),
        Scenario(
            "mcp-servers-failed",
            "--mcp-config with two servers that cannot start and --strict-mcp-config: the init "
            "event lists both with status failed; the run goes on and succeeds.",
            [TextReply("Done without MCP.")],
            args=(*ACCEPT_EDITS, "--mcp-config", json.dumps(BROKEN_MCP), "--strict-mcp-config"),
        ),
    ]


def record(scenario: Scenario, claude: Path) -> dict[str, Any]:
    """Run ``scenario`` once and write its transcript and metadata; return the metadata."""
    with (
        tempfile.TemporaryDirectory(prefix="pagent-transcript-") as scratch,
        FakeAnthropic(scenario.script, when_exhausted=scenario.when_exhausted) as server,
    ):
        home, work = Path(scratch) / "home", Path(scratch) / "work"
        home.mkdir()
        work.mkdir()
        env = claude_env(server.url, home, max_retries=scenario.max_retries) | dict(scenario.extra_env)
        started = time.monotonic()
        run = run_claude(claude, prompt=PROMPT, cwd=work, env=env, args=scenario.args, timeout_s=120)
        tools = [
            tool
            for tool in ((server.requests or [{}])[0].get("tools") or [])
            if tool.get("name") == "StructuredOutput"
        ]
        meta = {
            "description": scenario.description,
            "claude_code_version": CLAUDE_CODE_VERSION,
            "argv_extra": list(scenario.args),
            "exit_code": run.returncode,
            "timed_out": run.timed_out,
            "elapsed_s": round(run.elapsed_s, 2),
            "stderr": run.stderr,
            "event_types": [
                f"{event.get('type')}/{event.get('subtype', '')}".rstrip("/") for event in run.events
            ],
            "files_created": sorted(str(path.relative_to(work)) for path in work.rglob("*")),
            "structured_output_tool": tools[0] if tools else None,
            "requests": _request_summary(server, started),
        }
    HERE.mkdir(exist_ok=True)
    (HERE / f"{scenario.name}.jsonl").write_text(run.stdout)
    (HERE / f"{scenario.name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def main(names: list[str]) -> int:
    """Record the named scenarios (all when none is named); return a process exit code."""
    cli = ensure_claude_cli()
    if cli.path is None:
        print(f"cannot record: {cli.reason}", file=sys.stderr)
        return 1
    chosen = [scenario for scenario in scenarios() if not names or scenario.name in names]
    for scenario in chosen:
        meta = record(scenario, cli.path)
        events = " ".join(meta["event_types"])
        print(f"{scenario.name}: exit {meta['exit_code']} in {meta['elapsed_s']} s, {events}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
