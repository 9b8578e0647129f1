"""Codex's headless features without a process: ``--output-schema`` and ``exec resume``.

The argv and attempt files the kind derives (and what ``build_spec`` makes of them for a retry,
an answer and a schema), and the parser's structured result and thread on transcripts recorded
with the real CLI 0.169 (``tests/transcripts/codex/structured-*``, ``resume-*``; regenerate with
``python -m tests.transcripts.record_agents codex``). That the CLI obeys them end to end, through
``pagent-run``: ``tests/test_codex_results_e2e.py``.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from supervisor.agents.codex import CodexParser
from supervisor.agents.codex_kind import SCHEMA_FILE, CodexKind
from supervisor.agents.registry import KINDS
from supervisor.engine.around import new_session
from supervisor.engine.spec import build_spec
from supervisor.plan.model import AgentSpec, Plan, TaskSettings
from supervisor.results.structured import judge_result
from supervisor.seam import AGENT_HOME, ATTEMPT_DIR, AttemptKey, AttemptSpec, Exit
from supervisor.state.records import AttemptRecord
from supervisor.ui.compose import load_plan

TRANSCRIPTS = Path(__file__).parents[2] / "transcripts" / "codex"
THREAD = "01a23429-fe23-7ae3-9de3-ed36064f7b6f"
URL = "http://127.0.0.1:8000/v1"
SCHEMA = {
    "type": "object",
    "properties": {"status": {"enum": ["done", "nothing_to_do", "needs_input", "failed"]}},
    "required": ["status"],
}
SCHEMA_ARGS = ("--output-schema", f"{ATTEMPT_DIR}/{SCHEMA_FILE}")


def agent(**keys: Any) -> AgentSpec:
    return replace(KINDS.catalog().agents["codex"], name="cx", **keys)


def parsed(name: str) -> tuple[dict[str, Any], dict[str, Any], CodexParser]:
    """The transcript ``name`` fed to a fresh parser (stdout and stderr): metrics, meta, parser."""
    meta: dict[str, Any] = json.loads((TRANSCRIPTS / f"{name}.meta.json").read_text())
    parser = CodexParser()
    parser.feed((TRANSCRIPTS / f"{name}.jsonl").read_bytes())
    parser.feed_stderr(meta["stderr_tail"].encode())
    outcome = parser.outcome(Exit(code=meta["exit_code"]))
    return {"succeeded": outcome.succeeded, "reason": outcome.reason, **outcome.metrics}, meta, parser


# -- the kind ---------------------------------------------------------------------------------------


def test_the_headless_hooks() -> None:
    """Codex resumes and returns structured results, but cannot be told a session id."""
    kind = CodexKind()
    assert kind.resumes
    assert kind.session_args("11111111-2222-4333-8444-555555555555", THREAD) is None
    assert new_session(kind) is None  # so an attempt's session is the thread Codex reports
    assert kind.structured_output_args(json.dumps(SCHEMA)) == SCHEMA_ARGS
    assert KINDS.catalog().kinds["codex"].structured_output


def test_resume_comes_after_every_exec_option_and_reads_stdin() -> None:
    """``resume THREAD -`` last: exec's options (``-s workspace-write``, the provider) stay
    before the subcommand, which takes no ``-s`` (a resumed thread without it is read-only)."""
    kind = CodexKind()
    settings = TaskSettings(extra_args=("--add-dir", "/data"), resume_on_retry=True)
    argv = kind.argv(agent(base_url=URL, model="gpt-5.5", extra_args=("-x",)), settings, THREAD)
    assert argv[:5] == ("codex", "exec", "--json", "-s", "workspace-write")
    assert argv[-6:] == ("-x", "--add-dir", "/data", "resume", THREAD, "-")
    assert argv.count("resume") == 1
    fresh = kind.argv(agent(), settings, None)
    assert "resume" not in fresh
    # Without resume_on_retry the kind starts over (build_spec sets it for an answer).
    assert "resume" not in kind.argv(agent(), TaskSettings(), THREAD)


def test_the_schema_is_an_attempt_file_beside_the_own_home() -> None:
    kind = CodexKind()
    text = json.dumps(SCHEMA)
    user = kind.setup(agent(), TaskSettings(result_schema=text))
    assert (dict(user.env), dict(user.files), user.home) == ({}, {SCHEMA_FILE: text.encode()}, None)
    own = kind.setup(agent(base_url=URL), TaskSettings(result_schema=text))
    assert dict(own.env) == {"CODEX_HOME": AGENT_HOME}
    assert dict(own.files) == {SCHEMA_FILE: text.encode()}
    assert own.home == "cx"
    assert dict(kind.setup(agent(base_url=URL), TaskSettings()).files) == {}


# -- build_spec with a Codex agent ------------------------------------------------------------------


def codex_plan(tmp_path: Path, settings: str = "") -> Plan:
    (tmp_path / "result.json").write_text(json.dumps(SCHEMA))
    path = tmp_path / "plan.toml"
    path.write_text(
        f'[agents.cx]\nkind = "codex"\nbase_url = "{URL}"\npreflight = false\n'
        f'[defaults]\nagent = "cx"\nresult_schema = "result.json"\n{settings}\n'
        '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "Pick a database for {task_id}."\n'
    )
    return load_plan(path)


def spec_of(
    tmp_path: Path, plan: Plan, attempt: int, previous: AttemptRecord | None, answer: str | None = None
) -> tuple[AttemptSpec, str]:
    task = plan.tasks[0]
    prompt = tmp_path / f"prompt-{attempt}.txt"
    spec = build_spec(
        plan,
        task,
        KINDS["codex"],
        key=AttemptKey(plan.uid, "R1", "a", attempt),
        cwd=tmp_path,
        workspace=None,
        branch="pagent/p/a",
        prompt_path=prompt,
        previous=previous,
        session_id=new_session(KINDS["codex"]),
        answer=answer,
        environ={},
    )
    return spec, prompt.read_text()


def earlier(answer: str | None = None) -> AttemptRecord:
    return AttemptRecord(
        "R1", "a", 1, 0.0, "/nonexistent.log", "c", reason="needs-input", session_id=THREAD, answer=answer
    )


def test_a_codex_plan_with_a_schema_loads_and_names_the_schema_file(tmp_path: Path) -> None:
    spec, prompt = spec_of(tmp_path, codex_plan(tmp_path), 1, None)
    assert spec.argv[-2:] == SCHEMA_ARGS
    assert json.loads(spec.files[SCHEMA_FILE]) == SCHEMA
    assert "resume" not in spec.argv
    assert prompt == "Pick a database for a."


def test_an_answer_resumes_the_thread_that_asked_with_the_answer_as_prompt(tmp_path: Path) -> None:
    spec, prompt = spec_of(tmp_path, codex_plan(tmp_path), 2, earlier("use SQLite"), "use SQLite")
    assert spec.argv[-5:] == ("resume", THREAD, "-", *SCHEMA_ARGS)
    assert prompt == "use SQLite\n"
    assert spec.env["CODEX_HOME"] == AGENT_HOME  # where the thread is kept (home = "own")


def test_resume_on_retry_resumes_the_thread_with_the_tasks_prompt(tmp_path: Path) -> None:
    plan = codex_plan(tmp_path, "resume_on_retry = true")
    spec, prompt = spec_of(tmp_path, plan, 2, earlier())
    assert spec.argv[-5:] == ("resume", THREAD, "-", *SCHEMA_ARGS)
    assert prompt == "Pick a database for a."
    # Without resume_on_retry a plain retry starts a new thread; a later answer leads the prompt.
    spec, prompt = spec_of(tmp_path, codex_plan(tmp_path), 3, earlier(), "use SQLite")
    assert "resume" not in spec.argv
    assert prompt.startswith("A person answered: use SQLite\n\n")


# -- the parser on recorded transcripts -------------------------------------------------------------


def test_the_final_message_is_the_structured_result() -> None:
    """With ``--output-schema`` the CLI sent the schema unchanged as the answer's format and
    printed the model's JSON as the last agent_message; the parser reports it parsed."""
    metrics, meta, _ = parsed("structured-needs-input")
    assert metrics["structured_output"] == {"status": "needs_input", "question": "SQLite or PostgreSQL?"}
    (request,) = meta["requests"]
    assert request["text_format"] == {"type": "json_schema", "strict": True, "name": "codex_output_schema"}
    assert request["schema_sent_unchanged"]
    output = metrics["structured_output"]
    verdict = judge_result(json.dumps(SCHEMA), metrics["succeeded"], metrics["reason"], output)
    assert (verdict.succeeded, verdict.reason, verdict.detail) == (
        False,
        "needs-input",
        {"question": "SQLite or PostgreSQL?"},
    )
    after_tool, _, _ = parsed("structured-after-tool")
    assert after_tool["structured_output"] == {"status": "done", "summary": "created hello.txt"}
    assert after_tool["turns"] == 2


def test_prose_instead_of_json_is_no_structured_result() -> None:
    metrics, _, _ = parsed("structured-prose")
    assert (metrics["succeeded"], metrics["structured_output"]) == (True, None)
    verdict = judge_result(json.dumps(SCHEMA), True, "ok", metrics["structured_output"])
    assert verdict.reason == "result-invalid: the agent returned no structured result"


def test_a_resumed_thread_keeps_its_id_and_the_server_got_the_earlier_turns() -> None:
    """``exec resume THREAD``: the same thread id, the earlier question and answer in the input,
    and the usage of the whole thread (100 earlier + 2 x 100 now)."""
    metrics, meta, _ = parsed("resume-thread")
    assert metrics["session_id"] == meta["resumed_thread"]
    assert meta["argv"][7:9] == ["resume", meta["resumed_thread"]]
    first = meta["requests"][0]["said"]
    assert first[1] == 'assistant: {"status": "needs_input", "question": "SQLite or PostgreSQL?"}'
    assert first[0] == first[-1] == "user: Create hello.txt saying hello, then say what you did."
    assert metrics["structured_output"] == {"status": "done", "summary": "created hello.txt"}
    assert metrics["tokens_in"] == 300


def test_a_thread_codex_cannot_find_is_no_result_without_a_session() -> None:
    metrics, meta, parser = parsed("resume-missing-thread")
    assert (metrics["succeeded"], metrics["reason"], metrics["session_id"]) == (False, "no-result", None)
    assert meta["exit_code"] == 1
    assert "no rollout found for thread id" in metrics["error_text"]
    assert not parser.finished


def test_a_final_message_that_is_not_json_or_is_missing() -> None:
    """Fed by hand: a JSON array is reported as it is (the schema's validation judges it); an
    empty final message and a turn without one give no result."""
    for text, expected in (("[1, 2]", [1, 2]), ("", None), ("  ", None), ("{oops", None)):
        parser = CodexParser()
        item = {"id": "i", "type": "agent_message", "text": text}
        lines = [{"type": "item.completed", "item": item}, {"type": "turn.completed", "usage": {}}]
        parser.feed("".join(json.dumps(line) + "\n" for line in lines).encode())
        assert parser.outcome(Exit(code=0)).metrics["structured_output"] == expected, text
    silent = CodexParser()
    silent.feed(b'{"type": "turn.completed", "usage": {}}\n')
    assert silent.outcome(Exit(code=0)).metrics["structured_output"] is None
