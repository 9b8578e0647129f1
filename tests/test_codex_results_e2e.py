"""End to end with the real Codex CLI 0.169 against scripted Responses APIs on 127.0.0.1:
structured results (``result_schema`` -> ``--output-schema FILE``), answering a task that needs
a person (``pagent answer`` then ``--retry-failed`` resumes its thread with ``codex exec
resume``), and ``resume_on_retry``.

The agents are declared as a user would (``kind = "codex"``, ``base_url``, ``model``), so the
built-in command runs; what Codex sent is read from the request bodies each server recorded:
the schema as the answer's ``text.format``, and, for a resumed thread, the earlier turns.
Skipped, with the reason shown, only where npm cannot install the CLI (required with
``PAGENT_REQUIRE_AGENT_CLIS=1``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.agent_lab import Lab, lab_in
from tests.fake_http import TextReply, ToolCallReply
from tests.fake_openai import structured_output

pytestmark = [pytest.mark.slow, pytest.mark.agents, pytest.mark.timeout(900)]

SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["done", "nothing_to_do", "needs_input", "failed"]},
        "question": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["status"],
}
QUESTION = "SQLite or PostgreSQL?"


def write(name: str, text: str) -> ToolCallReply:
    """Codex's shell tool writing ``name`` in the worktree."""
    return ToolCallReply("exec_command", {"cmd": f"printf '{text}\\n' > {name}"})


def said(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The user's and the model's messages of one Responses request, in order (Codex's own
    environment context left out)."""
    found = []
    for item in body.get("input") or []:
        if item.get("type") == "message" and item.get("role") in ("user", "assistant"):
            text = " ".join(str(part.get("text", "")) for part in item.get("content") or [])
            if not text.lstrip().startswith("<environment_context>"):
                found.append((str(item["role"]), text))
    return found


def thread_in(log: str) -> str:
    """The thread id of the attempt's ``thread.started`` event, as the log holds it."""
    for line in log.splitlines():
        if '"thread.started"' in line:
            return str(json.loads(line[line.index("{") :])["thread_id"])
    raise AssertionError("no thread.started event in the log")


def run_dir(lab: Lab) -> Path:
    return lab.plan.parent / ".pagent" / "runs" / lab.status()["run_id"]


def test_structured_results_then_an_answer_resumes_the_thread(tmp_path: Path, repo: Path) -> None:
    """Issue 18's "done when", for Codex: ``needs_input`` ends ``needs-input`` with its question
    first in the summary, ``nothing_to_do`` succeeds without changes under ``require_changes``;
    after ``pagent answer PLAN ask "use SQLite"`` and ``--retry-failed`` the task's next attempt
    resumes its thread (the server gets the earlier turns, then the answer) and succeeds."""
    with lab_in(tmp_path, repo) as lab:
        build = lab.codex("cx-build", [write("app.py", "print(1)"), structured_output(status="done")])
        ask = lab.codex(
            "cx-ask",
            [
                structured_output(status="needs_input", question=QUESTION),
                write("db.txt", "sqlite"),
                structured_output(status="done", summary="set up SQLite"),
            ],
        )
        lab.codex("cx-noop", [structured_output(status="nothing_to_do")])
        lab.codex("cx-talk", [TextReply("I would rather talk."), TextReply("Still talking.")])
        lab.write_plan(
            [
                {"id": "build", "agent": "cx-build", "prompt": "Write app.py."},
                {"id": "ask", "agent": "cx-ask", "prompt": "Set up the database."},
                {"id": "noop", "agent": "cx-noop", "prompt": "Fix the bug if there is one."},
                {"id": "talk", "agent": "cx-talk", "prompt": "Anything."},
            ],
            jobs=4,
            result_schema=SCHEMA,
            require_changes=True,
        )
        done, took = lab.run()
        print(f"\ncodex structured results: {took:.1f}s")
        assert done.returncode == 1, done.stderr
        tasks = lab.tasks()
        assert (tasks["build"]["state"], tasks["build"]["reason"]) == ("succeeded", "ok")
        assert tasks["build"]["result"] == {"status": "done"}
        assert tasks["build"]["diff"]["paths"] == ["app.py"]
        ask_task = tasks["ask"]
        assert (ask_task["state"], ask_task["reason"], ask_task["attempts"]) == ("failed", "needs-input", 1)
        assert ask_task["result"] == {"status": "needs_input", "question": QUESTION}
        noop = tasks["noop"]
        assert (noop["state"], noop["reason"], noop["result"]) == (
            "succeeded",
            "ok",
            {"status": "nothing_to_do"},
        )
        assert (noop["diff"]["commits"], noop["diff"]["files"]) == (0, 0)
        talk = tasks["talk"]
        assert (talk["state"], talk["reason"], talk["result"]) == (
            "failed",
            "result-invalid: the agent returned no structured result",
            None,
        )
        # Codex sent the schema, unchanged, as the format of every answer of the task.
        for request in build.requests:
            assert request["text"]["format"]["type"] == "json_schema"
            assert request["text"]["format"]["schema"] == SCHEMA
        # Every attempt's session is the thread Codex started (pagent cannot choose it).
        for task_id, task in tasks.items():
            assert task["session_id"] == thread_in(lab.log(task_id)), task_id

        # The question first: needs-input leads the summary, its question right under it.
        summary = done.stdout.splitlines()
        first = next(i for i, line in enumerate(summary) if line.startswith("  failed"))
        assert summary[first].split()[:3] == ["failed", "ask", "(needs-input)"]
        assert summary[first + 1].strip() == f"question: {QUESTION}"

        answered = lab.pagent("answer", str(lab.plan), "ask", "use SQLite")
        assert answered.splitlines()[:2] == ["ask asked:", f"  question: {QUESTION}"]
        again, took = lab.run(300.0, "--retry-failed")
        print(f"codex answer resumed: {took:.1f}s")
        assert again.returncode == 1, again.stderr  # "talk" still answers in prose
        view = lab.tasks()["ask"]
        assert (view["state"], view["attempts"], view["reason"]) == ("succeeded", 2, "ok")
        assert view["result"] == {"status": "done", "summary": "set up SQLite"}
        assert view["diff"]["paths"] == ["db.txt"]
        first_try, second_try = view["history"]
        assert first_try["answer"] == "use SQLite"
        assert second_try["session_id"] == first_try["session_id"]  # the same thread, continued
        assert (run_dir(lab) / "prompts" / "ask.2.txt").read_text() == "use SQLite\n"
        # The server saw the whole conversation, then the answer as the new turn.
        resumed = said(ask.requests[1])
        assert "Set up the database." in resumed[0][1]
        assert resumed[1] == ("assistant", json.dumps({"status": "needs_input", "question": QUESTION}))
        assert (resumed[-1][0], resumed[-1][1].strip()) == ("user", "use SQLite")
        assert ask.requests[1]["text"]["format"]["schema"] == SCHEMA
        assert ask.remaining == 0


def test_resume_on_retry_continues_the_thread(tmp_path: Path, repo: Path) -> None:
    """``resume_on_retry``: the retry after ``no-changes`` resumes the first attempt's thread
    with the task's prompt, and the server gets the first attempt's turn before it."""
    with lab_in(tmp_path, repo) as lab:
        server = lab.codex(
            "cx",
            [
                TextReply("I looked around and changed nothing."),
                write("fix.txt", "fixed"),
                TextReply("Fixed."),
            ],
        )
        lab.write_plan(
            [{"id": "fix", "agent": "cx", "prompt": "Fix it."}],
            retries=1,
            resume_on_retry=True,
            require_changes=True,
        )
        done, took = lab.run()
        print(f"\ncodex resume_on_retry: {took:.1f}s")
        assert done.returncode == 0, done.stderr
        task = lab.tasks()["fix"]
        assert [h["reason"] for h in task["history"]] == ["no-changes", "ok"]
        one, two = (h["session_id"] for h in task["history"])
        assert one == two == thread_in(lab.pagent("logs", str(lab.plan), "fix", "--attempt", "2"))
        first, resumed = said(server.requests[0]), said(server.requests[1])
        assert resumed[: len(first)] == first
        assert resumed[len(first)] == ("assistant", "I looked around and changed nothing.")
        assert "Fix it." in resumed[-1][1]
        assert task["diff"]["paths"] == ["fix.txt"]
