"""What an attempt is started with, for the headless features: the session pagent chose, the
session it continues, a person's answer, the result schema and its own telemetry context."""

from __future__ import annotations

import json
from pathlib import Path

from supervisor.agents.claude import ClaudeKind
from supervisor.agents.plain import PlainKind
from supervisor.engine.spec import build_spec
from supervisor.engine.telemetry import attempt_context
from supervisor.plan.model import Plan
from supervisor.seam import AttemptKey, AttemptSpec
from supervisor.state.records import AttemptRecord
from supervisor.ui.compose import KINDS, load_plan

SESSION = "11111111-2222-4333-8444-555555555555"
EARLIER = "99999999-8888-4777-8666-555555555555"


def plan_at(tmp_path: Path, settings: str = "", agent: str = "cc") -> Plan:
    path = tmp_path / "plan.toml"
    path.write_text(
        '[agents.cc]\ncommand = ["claude", "-p"]\nkind = "claude"\npreflight = false\n'
        '[agents.sh]\ncommand = ["agent.sh"]\n'
        f'[defaults]\nagent = "{agent}"\n{settings}\n'
        '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "Pick a database for {task_id}."\n'
    )
    return load_plan(path)


def spec_of(
    tmp_path: Path,
    plan: Plan,
    *,
    attempt: int = 1,
    previous: AttemptRecord | None = None,
    session_id: str | None = SESSION,
    answer: str | None = None,
    environ: dict[str, str] | None = None,
) -> tuple[AttemptSpec, str]:
    task = plan.tasks[0]
    kind = KINDS[plan.agents[task.settings.agent].kind]
    prompt = tmp_path / f"prompt-{attempt}.txt"
    spec = build_spec(
        plan,
        task,
        kind,
        key=AttemptKey(plan.uid, "R1", "a", attempt),
        cwd=tmp_path,
        workspace=None,
        branch="pagent/p/a",
        prompt_path=prompt,
        previous=previous,
        session_id=session_id,
        answer=answer,
        environ=environ or {},
    )
    return spec, prompt.read_text()


def earlier(answer: str | None = None, session: str | None = EARLIER) -> AttemptRecord:
    return AttemptRecord(
        "R1", "a", 1, 0.0, "/nonexistent.log", "c", reason="needs-input", session_id=session, answer=answer
    )


def test_a_first_attempt_gets_the_session_pagent_chose(tmp_path: Path) -> None:
    spec, prompt = spec_of(tmp_path, plan_at(tmp_path))
    assert spec.argv[-2:] == ("--session-id", SESSION)
    assert "--resume" not in spec.argv
    assert prompt == "Pick a database for a."


def test_resume_on_retry_forks_the_previous_session_into_the_new_one(tmp_path: Path) -> None:
    """2.1.328 refuses --session-id with --resume unless --fork-session is given."""
    plan = plan_at(tmp_path, "resume_on_retry = true")
    spec, prompt = spec_of(tmp_path, plan, attempt=2, previous=earlier())
    assert spec.argv[-5:] == ("--resume", EARLIER, "--fork-session", "--session-id", SESSION)
    assert spec.argv.count("--resume") == 1
    assert "Pick a database" in prompt  # resumed, but with the task's prompt


def test_without_resume_on_retry_a_retry_starts_over(tmp_path: Path) -> None:
    spec, _ = spec_of(tmp_path, plan_at(tmp_path), attempt=2, previous=earlier())
    assert "--resume" not in spec.argv
    assert spec.argv[-2:] == ("--session-id", SESSION)


def test_an_answer_continues_the_session_that_asked_as_the_whole_prompt(tmp_path: Path) -> None:
    """Even without resume_on_retry: the answer belongs to the conversation that asked."""
    spec, prompt = spec_of(
        tmp_path, plan_at(tmp_path), attempt=2, previous=earlier("use SQLite"), answer="use SQLite"
    )
    assert spec.argv[-5:] == ("--resume", EARLIER, "--fork-session", "--session-id", SESSION)
    assert prompt == "use SQLite\n"


def test_an_answer_leads_the_prompt_where_nothing_can_be_resumed(tmp_path: Path) -> None:
    """A kind that cannot resume, or an answer to an attempt before the previous one."""
    plain = plan_at(tmp_path, agent="sh")
    spec, prompt = spec_of(tmp_path, plain, attempt=2, previous=earlier("use SQLite"), answer="use SQLite")
    assert spec.argv == ("agent.sh",)
    assert prompt == "A person answered: use SQLite\n\nPick a database for a."
    claude = plan_at(tmp_path)
    spec, prompt = spec_of(tmp_path, claude, attempt=3, previous=earlier(), answer="use SQLite")
    assert "--resume" not in spec.argv
    assert prompt.startswith("A person answered: use SQLite\n\n")
    # An answer to an attempt whose session never started (its hooks failed): nothing to resume.
    spec, prompt = spec_of(tmp_path, claude, attempt=2, previous=earlier("x", session=None), answer="x")
    assert "--resume" not in spec.argv
    assert prompt.startswith("A person answered: x\n\n")


def test_an_answer_with_braces_is_not_a_template(tmp_path: Path) -> None:
    _, prompt = spec_of(
        tmp_path, plan_at(tmp_path, agent="sh"), attempt=2, previous=earlier(), answer="use {x}"
    )
    assert prompt.startswith("A person answered: use {x}\n\n")


def test_kind_flags_and_the_schema_go_on_the_argv(tmp_path: Path) -> None:
    (tmp_path / "result.json").write_text(json.dumps({"type": "object"}))
    plan = plan_at(
        tmp_path,
        'result_schema = "result.json"\nfallback_model = "sonnet"\nsetting_sources = ["project"]\n'
        "strict_mcp_config = true\nmax_budget_usd = 2.5",
    )
    spec, _ = spec_of(tmp_path, plan)
    argv = list(spec.argv)
    assert argv[:2] == ["claude", "-p"]
    assert argv[argv.index("--fallback-model") + 1] == "sonnet"
    assert argv[argv.index("--setting-sources") + 1] == "project"
    assert "--strict-mcp-config" in argv
    assert argv[argv.index("--max-budget-usd") + 1] == "2.5"
    assert json.loads(argv[argv.index("--json-schema") + 1]) == {"type": "object"}
    empty = plan_at(tmp_path, "setting_sources = []")
    argv = list(spec_of(tmp_path, empty)[0].argv)
    assert argv[argv.index("--setting-sources") + 1] == ""  # no settings file at all


def test_the_kinds_headless_hooks() -> None:
    claude, plain = ClaudeKind(), PlainKind()
    assert claude.resumes
    assert not plain.resumes
    assert claude.session_args(SESSION, None) == ("--session-id", SESSION)
    assert plain.session_args(SESSION, EARLIER) is None
    assert plain.structured_output_args("{}") is None
    catalog = KINDS.catalog()
    assert catalog.kinds["claude"].structured_output
    assert not catalog.kinds["plain"].structured_output


def test_telemetry_each_attempt_gets_its_own_span_and_resource(tmp_path: Path) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    env = {"TRACEPARENT": parent, "OTEL_RESOURCE_ATTRIBUTES": "service.name=nightly,team=infra"}
    spec, _ = spec_of(tmp_path, plan_at(tmp_path), environ=env)
    version, trace, span, flags = spec.env["TRACEPARENT"].split("-")
    assert (version, trace, flags) == ("00", "0af7651916cd43dd8448eb211c80319c", "01")
    assert span != "b7ad6b7169203331"
    assert len(span) == 16
    assert span != "0" * 16
    other, _ = spec_of(tmp_path, plan_at(tmp_path), attempt=2, environ=env)
    assert other.env["TRACEPARENT"].split("-")[2] != span  # one context per attempt
    assert spec.env["OTEL_RESOURCE_ATTRIBUTES"] == (
        "service.name=nightly,team=infra,pagent.run=R1,pagent.task=a,pagent.attempt=1"
    )


def test_telemetry_only_under_opentelemetry_settings() -> None:
    def context(environ: dict[str, str], agent: dict[str, str] | None = None) -> dict[str, str]:
        return attempt_context(
            environ, agent or {}, run_id="R 1", task_id="t", attempt=2, new_span=lambda: "ab" * 8
        )

    assert context({"HOME": "/root"}) == {}
    only_otel = context({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert only_otel == {"OTEL_RESOURCE_ATTRIBUTES": "pagent.run=R%201,pagent.task=t,pagent.attempt=2"}
    # The agent's env wins over the supervisor's, and pagent's own attributes are replaced.
    agent = {"OTEL_RESOURCE_ATTRIBUTES": "pagent.task=old,x=1", "TRACEPARENT": "garbage"}
    mixed = context({"TRACEPARENT": "00-" + "1" * 32 + "-" + "2" * 16 + "-00"}, agent)
    assert "TRACEPARENT" not in mixed  # a malformed parent is left as it is
    assert mixed["OTEL_RESOURCE_ATTRIBUTES"] == "x=1,pagent.run=R%201,pagent.task=t,pagent.attempt=2"
    spans = iter(["0" * 16, "cd" * 8])
    fresh = attempt_context(
        {"TRACEPARENT": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"}, {}, run_id="r", task_id="t", attempt=1,
        new_span=lambda: next(spans),
    )  # fmt: skip
    assert fresh["TRACEPARENT"] == "00-" + "1" * 32 + "-" + "cd" * 8 + "-01"  # never an all-zero id


def test_a_retry_resumes_only_a_session_the_agent_confirmed() -> None:
    """An attempt whose agent reported no session (it died before starting one) keeps the id
    pagent chose, marked unconfirmed: a retry continues the latest confirmed one instead."""
    from supervisor.engine.around import resumable as _resumable

    first = AttemptRecord("R1", "a", 1, 0.0, "l", "c", session_id=EARLIER, reason="timeout")
    lost = AttemptRecord(
        "R1",
        "a",
        2,
        0.0,
        "l",
        "c",
        session_id=SESSION,
        reason="no-result",
        detail='{"session_unconfirmed": true}',
    )
    assert _resumable([]) is None
    assert _resumable([first]) == first
    chosen = _resumable([first, lost])
    assert chosen is not None
    assert (chosen.number, chosen.reason, chosen.session_id) == (2, "no-result", EARLIER)
    alone = _resumable([lost])
    assert alone is not None
    assert alone.session_id is None
