"""The keys of issue 18 at load time: hooks, copies, result schemas and Claude's headless flags.

Every value that cannot work is refused before anything runs, with one line naming the key; a
result schema is checked with ``jsonschema`` (an invalid one would be ignored by older CLIs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from supervisor.errors import PlanError
from supervisor.plan.model import Plan
from supervisor.ui.compose import load_plan

HEAD = '[agents.cc]\ncommand = ["claude", "-p"]\nkind = "claude"\npreflight = false\n'
SCHEMA = {"type": "object", "properties": {"status": {"type": "string"}}, "required": ["status"]}


def load(tmp_path: Path, defaults: str = "", task: str = "", head: str = HEAD) -> Plan:
    """A one-task plan with ``defaults`` in [defaults] and ``task`` in the task's table."""
    path = tmp_path / "plan.toml"
    task_table = f'[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "Do a."\n{task}\n'
    path.write_text(f'{head}[defaults]\nagent = "cc"\n{defaults}\n{task_table}')
    return load_plan(path)


def problem(tmp_path: Path, defaults: str = "", task: str = "", head: str = HEAD) -> str:
    with pytest.raises(PlanError) as caught:
        load(tmp_path, defaults, task, head)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_hooks_copies_and_flags_load_into_the_settings(tmp_path: Path) -> None:
    """Hooks become tuples of argv, durations seconds, copies a tuple without repeats."""
    plan = load(
        tmp_path,
        defaults='setup = [["python3", "-m", "venv", ".venv"], ["make", "deps"]]\n'
        'before_attempt = [["make", "fixtures"]]\nteardown = [["docker", "compose", "down"]]\n'
        'setup_timeout = "90s"\ncopy = [".env", "config/local.toml", ".env"]\n'
        'fallback_model = "sonnet"\nsetting_sources = ["project", "local", "project"]\n'
        'strict_mcp_config = true\nmcp = "required"',
    )
    s = plan.tasks[0].settings
    assert s.setup == (("python3", "-m", "venv", ".venv"), ("make", "deps"))
    assert s.before_attempt == (("make", "fixtures"),)
    assert s.teardown == (("docker", "compose", "down"),)
    assert s.setup_timeout == 90.0
    assert s.copy == (".env", "config/local.toml")
    assert (s.fallback_model, s.setting_sources, s.strict_mcp_config, s.mcp) == (
        "sonnet",
        ("project", "local"),
        True,
        "required",
    )


def test_defaults_are_off(tmp_path: Path) -> None:
    s = load(tmp_path).tasks[0].settings
    assert (s.setup, s.before_attempt, s.teardown, s.copy, s.result_schema) == ((), (), (), (), None)
    assert (s.setup_timeout, s.mcp, s.strict_mcp_config, s.setting_sources) == (
        600.0,
        "optional",
        False,
        None,
    )


@pytest.mark.parametrize(
    ("defaults", "expected"),
    [
        ("setup = []\nsetup = [[]]", "invalid TOML"),  # TOML itself refuses a key twice
        ("setup = [[]]", "defaults.setup[0]: expected `array` of length >= 1"),
        ('setup = ["make"]', "defaults.setup[0]: expected `array`, got `str`"),
        ('before_attempt = [[""]]', "defaults.before_attempt[0][0]: expected `str` of length >= 1"),
        ('setup_timeout = "0s"', "defaults.setup_timeout: expected a duration > 0"),
        ('copy = ["../secrets"]', "defaults.copy[0]: expected a path inside the main worktree"),
        ('copy = ["/etc/passwd"]', "defaults.copy[0]: expected a path inside the main worktree"),
        (
            'copy = [".env", "sub/.git/config"]',
            "defaults.copy[1]: 'sub/.git/config' is inside git's own '.git'",
        ),
        ('copy = ["."]', "defaults.copy[0]: '.' is the whole worktree"),
        ('setting_sources = ["everything"]', "defaults.setting_sources[0]: invalid enum value 'everything'"),
        ('mcp = "maybe"', "defaults.mcp: invalid enum value 'maybe'"),
    ],
)
def test_bad_values_are_one_line(tmp_path: Path, defaults: str, expected: str) -> None:
    assert expected in problem(tmp_path, defaults)


def test_workspace_hooks_need_a_workspace(tmp_path: Path) -> None:
    """With isolation = "none" there is no workspace to set up, copy into or tear down."""
    for key, value in (("setup", '[["true"]]'), ("teardown", '[["true"]]'), ("copy", '[".env"]')):
        message = problem(tmp_path, f"{key} = {value}", 'isolation = "none"')
        assert f"waves[0].tasks[0].{key} (from [defaults]): needs isolation = 'worktree'" in message
    plan = load(tmp_path, 'before_attempt = [["true"]]', 'isolation = "none"')
    assert plan.tasks[0].settings.before_attempt == (("true",),)


def test_result_schema_from_a_file_and_inline(tmp_path: Path) -> None:
    """A file relative to the plan, or a TOML table: both become the same canonical JSON."""
    (tmp_path / "schemas").mkdir()
    (tmp_path / "schemas" / "result.json").write_text(json.dumps(SCHEMA, indent=2))
    from_file = load(tmp_path, 'result_schema = "schemas/result.json"').tasks[0].settings.result_schema
    inline = load(
        tmp_path,
        task='[waves.tasks.result_schema]\ntype = "object"\nrequired = ["status"]\n'
        '[waves.tasks.result_schema.properties.status]\ntype = "string"',
    )
    assert from_file is not None
    assert json.loads(from_file) == SCHEMA
    assert inline.tasks[0].settings.result_schema == from_file


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "object", "properties": {"status": {"type": "strin"}}}, "not a valid JSON Schema: "),
        (
            {"type": "object", "required": "status"},
            "not a valid JSON Schema: 'status' is not of type 'array'",
        ),
        ({"type": "array"}, 'the schema must describe one JSON object: set "type": "object"'),
        ({"properties": {}}, 'set "type": "object" at its top'),
        (
            {"type": "object", "$schema": "https://example.com/mine"},
            "unknown $schema 'https://example.com/mine'",
        ),
        (["type", "object"], "expected a JSON Schema object, got list"),
    ],
)
def test_invalid_schemas_are_refused(tmp_path: Path, schema: object, expected: str) -> None:
    (tmp_path / "result.json").write_text(json.dumps(schema))
    message = problem(tmp_path, 'result_schema = "result.json"')
    assert message.startswith("plan.toml: defaults.result_schema: ")
    assert expected in message


def test_a_schema_file_that_is_missing_or_not_json(tmp_path: Path) -> None:
    assert "defaults.result_schema: no such file: " in problem(tmp_path, 'result_schema = "nope.json"')
    (tmp_path / "bad.json").write_text("{not json")
    assert "bad.json is not JSON" in problem(tmp_path, 'result_schema = "bad.json"')
    assert "is a directory" in problem(tmp_path, 'result_schema = "."')


def test_a_kind_without_structured_results_is_refused(tmp_path: Path) -> None:
    """A plain agent cannot return a structured result: refused at load, naming where it came from."""
    head = HEAD + '[agents.sh]\ncommand = ["true"]\n'
    (tmp_path / "result.json").write_text(json.dumps(SCHEMA))
    message = problem(tmp_path, 'result_schema = "result.json"', 'agent = "sh"', head=head)
    assert message == (
        "plan.toml: waves[0].tasks[0].result_schema (from [defaults]): agent 'sh' (kind plain) "
        "cannot return a structured result"
    )
