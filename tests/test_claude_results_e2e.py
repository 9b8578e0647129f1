"""End to end with the real Claude Code CLI 2.1.328 against scripted Messages APIs on 127.0.0.1:
structured results (``result_schema`` -> ``--json-schema``), answering a task that needs a
person (``pagent answer`` then ``--retry-failed`` resumes its session), the session id pagent
chose (in the store before the CLI starts), ``resume_on_retry``, ``mcp = "required"`` and the
fallback model.

Each agent's command is a small wrapper that, before it ``exec``s the real CLI, reads the
attempt's record from the state database (read-only) and logs the argv: so the test sees what
the store held before the CLI printed anything, and what the CLI was started with.
Skipped, with the reason shown, only where the CLI cannot be installed.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.claude_cli import ensure_claude_cli
from tests.conftest import bin_path, cli
from tests.fake_anthropic import ErrorReply, FakeAnthropic, TextReply, structured_output, write_file
from tests.test_claude_e2e import Lab

pytestmark = [pytest.mark.slow, pytest.mark.claude]

SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["done", "nothing_to_do", "needs_input", "failed"]},
        "question": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["status"],
}
WRAPPER = """#!{python}
import json, os, sqlite3, sys
entry = {{"argv": sys.argv[1:]}}
if "PAGENT_RUN_ID" in os.environ:  # an attempt, not the preflight
    db = sqlite3.connect("file:" + os.environ["STATE_DB"] + "?mode=ro", uri=True)
    row = db.execute(
        "SELECT session_id FROM attempts WHERE run_id = ? AND task_id = ? AND number = ?",
        (os.environ["PAGENT_RUN_ID"], os.environ["PAGENT_TASK_ID"], int(os.environ["PAGENT_ATTEMPT"])),
    ).fetchone()
    db.close()
    entry.update(
        task=os.environ["PAGENT_TASK_ID"], attempt=int(os.environ["PAGENT_ATTEMPT"]), recorded=row[0]
    )
with open(os.environ["WRAPPER_LOG"], "a") as log:
    log.write(json.dumps(entry) + "\\n")
os.execv(os.environ["REAL_CLAUDE"], [os.environ["REAL_CLAUDE"], *sys.argv[1:]])
"""


@pytest.fixture(scope="module")
def claude() -> Path:
    """The installed CLI 2.1.328, or a skip saying why there is none."""
    cli_found = ensure_claude_cli()
    if cli_found.path is None:
        pytest.skip(f"Claude Code CLI unavailable: {cli_found.reason}")
    return cli_found.path


@pytest.fixture
def lab(tmp_path: Path, repo: Path, claude: Path) -> Iterator[Lab]:
    with contextlib.ExitStack() as servers:
        yield Lab(tmp_path, repo, claude, servers)


def wrapped(lab: Lab, name: str, script: list[Any], **options: Any) -> FakeAnthropic:
    """Agent ``name`` (kind claude) started through the wrapper (module docstring)."""
    wrapper = lab.tmp / "claude-wrapper"
    if not wrapper.exists():
        wrapper.write_text(WRAPPER.format(python=sys.executable))
        wrapper.chmod(0o755)
    server = lab.agent(name, script, command=str(wrapper), **options)
    lab.agents[name]["env"].update(
        {
            "REAL_CLAUDE": str(lab.claude),
            "STATE_DB": str(lab.plan.parent / ".pagent" / "state.db"),
            "WRAPPER_LOG": str(lab.tmp / "wrapper.jsonl"),
        }
    )
    return server


def launches(lab: Lab, task: str) -> list[dict[str, Any]]:
    """What the wrapper saw for each attempt of ``task``, in order."""
    path = lab.tmp / "wrapper.jsonl"
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return [entry for entry in entries if entry.get("task") == task]


def after(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


def init_event(log: str) -> dict[str, Any]:
    for line in log.splitlines():
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("subtype") == "init":
                return event
    raise AssertionError("no init event in the log")


def texts(message: dict[str, Any]) -> list[str]:
    """The text parts (and tool calls, as "tool NAME") of one API message."""
    content = message.get("content")
    if isinstance(content, str):
        return [content]
    found = []
    for block in content or []:
        if block.get("type") == "text":
            found.append(block["text"])
        elif block.get("type") == "tool_use":
            found.append(f"tool {block['name']}")
    return found


def test_structured_results_then_an_answer_resumes_the_session(lab: Lab) -> None:
    """Issue 18's "done when": with ``result_schema`` and the real CLI, ``needs_input`` ends
    ``needs-input`` with its question first in the summary, ``nothing_to_do`` succeeds without
    changes under ``require_changes = true``; after ``pagent answer PLAN ask "use SQLite"`` and
    ``--retry-failed`` the task's next attempt resumes its session with that answer and
    succeeds; every attempt's session id is in the store before the CLI starts."""
    build = wrapped(
        lab, "cc-build", [write_file("app.py", "print('app')\n"), structured_output(status="done")]
    )
    ask = wrapped(
        lab,
        "cc-ask",
        [
            structured_output(status="needs_input", question="SQLite or PostgreSQL?"),
            write_file("db.txt", "sqlite\n"),
            structured_output(status="done", summary="set up SQLite"),
        ],
    )
    wrapped(lab, "cc-noop", [structured_output(status="nothing_to_do")])
    wrapped(lab, "cc-talk", [TextReply("I would rather talk."), TextReply("Still talking.")])
    notified = lab.tmp / "notified.jsonl"
    catch = f"import sys; open({str(notified)!r}, 'a').write(sys.stdin.read() + chr(10))"
    lab.write_plan(
        [
            {"id": "build", "agent": "cc-build", "prompt": "Write app.py."},
            {"id": "ask", "agent": "cc-ask", "prompt": "Set up the database."},
            {"id": "noop", "agent": "cc-noop", "prompt": "Fix the bug if there is one."},
            {"id": "talk", "agent": "cc-talk", "prompt": "Anything."},
        ],
        jobs=4,
        result_schema=SCHEMA,
        require_changes=True,
    )
    plan_text = (
        lab.plan.read_text() + f'\n[notify]\ncommand = ["{sys.executable}", "-c", {json.dumps(catch)}]\n'
    )
    lab.plan.write_text(plan_text)
    done, took = lab.run()
    print(f"\nstructured results: {took:.1f}s")
    assert done.returncode == 1, done.stderr
    tasks = lab.tasks()
    assert (tasks["build"]["state"], tasks["build"]["reason"]) == ("succeeded", "ok")
    assert tasks["build"]["result"] == {"status": "done"}
    assert tasks["build"]["diff"]["paths"] == ["app.py"]
    assert (tasks["ask"]["state"], tasks["ask"]["reason"], tasks["ask"]["attempts"]) == (
        "failed",
        "needs-input",
        1,
    )
    assert tasks["ask"]["result"] == {"status": "needs_input", "question": "SQLite or PostgreSQL?"}
    noop = tasks["noop"]
    assert (noop["state"], noop["reason"], noop["result"]) == ("succeeded", "ok", {"status": "nothing_to_do"})
    assert noop["diff"]["commits"] == 0
    assert noop["diff"]["files"] == 0
    talk = tasks["talk"]
    assert (talk["state"], talk["reason"]) == (
        "failed",
        "result-invalid: the agent returned no structured result",
    )
    assert talk["result"] is None
    # The CLI was given the schema as the StructuredOutput tool's input schema.
    tool = next(t for t in build.requests[0]["tools"] if t["name"] == "StructuredOutput")
    assert tool["input_schema"] == SCHEMA

    # The question first: needs-input leads the summary, its question right under it.
    summary = done.stdout.splitlines()
    first = next(i for i, line in enumerate(summary) if line.startswith("  failed"))
    assert summary[first].split()[:3] == ["failed", "ask", "(needs-input)"]
    assert summary[first + 1].strip() == "question: SQLite or PostgreSQL?"
    assert "question: SQLite or PostgreSQL?" in lab.pagent("status", str(lab.plan))
    sent = [json.loads(line) for line in notified.read_text().splitlines() if line.strip()]
    by_event = {payload["event"]: payload for payload in sent}
    assert by_event["needs-input"]["task"]["needs_person"] == ["question: SQLite or PostgreSQL?"]
    finished = by_event["run-finished"]
    assert finished["failed"][0]["id"] == "ask"
    assert finished["failed"][0]["result"] == {"status": "needs_input", "question": "SQLite or PostgreSQL?"}

    # Every attempt's session: chosen by pagent, in the store before the CLI started, used by it.
    for task_id in ("build", "ask", "noop", "talk"):
        (launch,) = launches(lab, task_id)
        chosen = after(launch["argv"], "--session-id")
        assert launch["recorded"] == chosen == tasks[task_id]["session_id"]
        assert init_event(lab.pagent("logs", str(lab.plan), task_id))["session_id"] == chosen

    # The answer: the question is shown first, then the answer is recorded.
    answered = cli(bin_path("pagent"), "answer", lab.plan, "ask", "use SQLite", env=lab.env)
    assert answered.returncode == 0, answered.stderr
    assert answered.stdout.splitlines()[:2] == ["ask asked:", "  question: SQLite or PostgreSQL?"]
    assert "answer recorded for ask, attempt 1" in answered.stdout
    assert lab.tasks()["ask"]["answer"] == "use SQLite"
    assert "answered: use SQLite" in lab.pagent("status", str(lab.plan))

    again = cli(bin_path("pagent-run"), lab.plan, "--retry-failed", env=lab.env)
    print(again.stdout, again.stderr)
    assert again.returncode == 1  # "talk" still returns no structured result
    ask_view = lab.tasks()["ask"]
    assert (ask_view["state"], ask_view["attempts"], ask_view["reason"]) == ("succeeded", 2, "ok")
    assert ask_view["result"] == {"status": "done", "summary": "set up SQLite"}
    first_try, second_try = ask_view["history"]
    assert first_try["answer"] == "use SQLite"
    assert second_try["session_id"] != first_try["session_id"]
    _, launch = launches(lab, "ask")
    argv = launch["argv"]
    assert after(argv, "--resume") == first_try["session_id"]
    assert "--fork-session" in argv
    assert launch["recorded"] == after(argv, "--session-id") == second_try["session_id"]
    run_dir = lab.plan.parent / ".pagent" / "runs" / lab.status()["run_id"]
    assert (run_dir / "prompts" / "ask.2.txt").read_text() == "use SQLite\n"
    # The API saw the whole conversation, then the answer as the new turn.
    resumed = ask.requests[1]["messages"]
    said = [text for message in resumed for text in texts(message)]
    assert "Set up the database." in " ".join(said)
    assert "tool StructuredOutput" in said
    assert texts(resumed[-1])[-1].strip() == "use SQLite"
    report = (run_dir / "report.html").read_text()
    assert "Results and answers" in report
    assert "use SQLite" in report
    assert "set up SQLite" in report


def test_resume_on_retry_continues_the_recorded_session(lab: Lab) -> None:
    """``--session-id`` on every attempt, recorded first; a retry with ``resume_on_retry``
    forks the previous attempt's session (``--resume S1 --fork-session --session-id S2``)."""
    server = wrapped(
        lab,
        "cc",
        [
            TextReply("I looked around and changed nothing."),
            write_file("fix.txt", "fixed\n"),
            TextReply("Fixed."),
        ],
    )
    lab.write_plan(
        [{"id": "fix", "agent": "cc", "prompt": "Fix it."}],
        retries=1,
        resume_on_retry=True,
        require_changes=True,
    )
    done, _ = lab.run()
    assert done.returncode == 0, done.stderr
    task = lab.tasks()["fix"]
    assert [h["reason"] for h in task["history"]] == ["no-changes", "ok"]
    one, two = launches(lab, "fix")
    s1, s2 = (h["session_id"] for h in task["history"])
    assert one["recorded"] == after(one["argv"], "--session-id") == s1
    assert "--resume" not in one["argv"]
    assert two["recorded"] == after(two["argv"], "--session-id") == s2
    assert after(two["argv"], "--resume") == s1
    assert init_event(lab.pagent("logs", str(lab.plan), "fix", "--attempt", "2"))["session_id"] == s2
    said = [text for message in server.requests[1]["messages"] for text in texts(message)]
    assert "I looked around and changed nothing." in said  # the first attempt's conversation


def test_mcp_required_and_the_model_that_answered(lab: Lab) -> None:
    """An MCP server that cannot start: shown in status; with ``mcp = "required"`` the attempt
    fails ``mcp-failed``. With ``fallback_model`` the model that answered is recorded."""
    broken = json.dumps({"mcpServers": {"db": {"command": "/nonexistent/mcp-db"}}})
    mcp_args = ["--permission-mode", "acceptEdits", "--mcp-config", broken]
    lab.agent("cc-needs-mcp", [write_file("a.txt", "a\n"), TextReply("done")], extra_args=mcp_args)
    lab.agent("cc-mcp-optional", [write_file("b.txt", "b\n"), TextReply("done")], extra_args=mcp_args)
    fallback = lab.agent(
        "cc-busy",
        [ErrorReply(529, "Overloaded")] * 3 + [write_file("c.txt", "c\n"), TextReply("done")],
        max_retries=5,
    )
    lab.write_plan(
        [
            {"id": "strict", "agent": "cc-needs-mcp", "prompt": "Use the db.", "mcp": "required"},
            {"id": "lenient", "agent": "cc-mcp-optional", "prompt": "Use the db if you can."},
            {"id": "busy", "agent": "cc-busy", "prompt": "Anything.", "fallback_model": "claude-fallback-1"},
        ],
        strict_mcp_config=True,
        setting_sources=["project"],
    )
    done, _ = lab.run()
    assert done.returncode == 1, done.stderr
    tasks = lab.tasks()
    assert (tasks["strict"]["state"], tasks["strict"]["reason"]) == ("failed", "mcp-failed: db (failed)")
    assert tasks["strict"]["detail"]["mcp_server_errors"] == [{"name": "db", "status": "failed"}]
    assert (tasks["lenient"]["state"], tasks["lenient"]["reason"]) == ("succeeded", "ok")
    assert tasks["lenient"]["detail"]["mcp_server_errors"] == [{"name": "db", "status": "failed"}]
    table = lab.pagent("status", str(lab.plan))
    assert "mcp server db: failed" in table
    assert (tasks["busy"]["state"], tasks["busy"]["model"]) == ("succeeded", "claude-fallback-1")
    models = [r.body.get("model") for r in fallback.log if r.script_index is not None]
    assert models[-1] == "claude-fallback-1"
    assert models[0] != "claude-fallback-1"
    assert "switched to the fallback model claude-fallback-1" in done.stderr
