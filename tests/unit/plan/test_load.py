"""Plan loading: a good plan becomes frozen dataclasses; every bad one is one line naming file and key."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from supervisor.errors import PlanError
from supervisor.plan.model import Plan, TaskSettings
from supervisor.plan.names import branch_problem
from supervisor.ui.compose import KINDS, load_plan

TASK = '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "Do a."\n'

FULL_PLAN = """\
name = "nightly"
repo = "repo"
base = "main"
jobs = 3
worktree_root = "../trees"

[defaults]
agent = "mine"
retries = 1
retry_delay = "90s"
timeout = "1h30m"
stall_timeout = "10m"
kill_grace = 5
workdir = "src"
isolation = "worktree"
min_free_memory = "1G"
extra_args = ["--fast"]

[agents.mine]
command = ["{python}", "{plan_dir}/agent.py", "--flag"]
env = { AGENT_HOME = "{plan_dir}/home", MODE = "quiet" }
kind = "plain"
extra_args = ["-v"]

[agents.smart]
command = ["claude", "-p"]
kind = "claude"

[[waves]]
name = "fixes"

[[waves.tasks]]
id = "fix-1"
prompt = "Fix the first bug."
branch = "feature/fix-1"

[[waves.tasks]]
id = "doc_2"
prompt_file = "prompts/doc.md"
agent = "smart"
retries = 0
retry_delay = 2.5
timeout = 600
stall_timeout = "1m30s"
kill_grace = "500ms"
workdir = "docs/api"
isolation = "none"
min_free_memory = 1048576
extra_args = []

[[waves]]

[[waves.tasks]]
id = "demo.3"
prompt = "Try the demo."
agent = "demo"

[[waves.tasks]]
id = "Claude_4"
prompt = "Ask Claude."
agent = "claude"
"""


def write_plan(directory: Path, text: str | bytes, name: str = "plan.toml") -> Path:
    """Write a plan file (text or raw bytes) into ``directory`` and return its path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def full_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Plan:
    """FULL_PLAN in ``tmp_path/plans``, loaded by a relative path from ``tmp_path``."""
    plans = tmp_path / "plans"
    write_plan(plans, FULL_PLAN, "nightly.toml")
    (plans / "prompts").mkdir()
    (plans / "prompts" / "doc.md").write_text("Document the API.\n", encoding="utf-8")
    # The prompt file must be found beside the plan, not in the current directory.
    monkeypatch.chdir(tmp_path)
    return load_plan("plans/nightly.toml")


# -- a good plan ------------------------------------------------------------------------------


def test_top_level_keys_are_read_and_paths_made_absolute(full_plan: Plan, tmp_path: Path) -> None:
    """name, base and jobs are taken as written; repo and worktree_root resolve from the plan's directory."""
    plans = (tmp_path / "plans").resolve()
    assert full_plan.name == "nightly"
    assert full_plan.path == tmp_path / "plans" / "nightly.toml"
    assert full_plan.path.is_absolute()
    assert full_plan.repo == plans / "repo"
    assert full_plan.base == "main"
    assert full_plan.jobs == 3
    assert full_plan.worktree_root == tmp_path.resolve() / "trees"
    assert full_plan.state_dir == tmp_path / "plans" / ".pagent"
    assert full_plan.key == "nightly.toml"


def test_waves_and_tasks_keep_file_order(full_plan: Plan) -> None:
    """Waves and their tasks come out in the order of the file, each task knowing its wave."""
    assert [w.index for w in full_plan.waves] == [0, 1]
    assert [t.id for t in full_plan.tasks] == ["fix-1", "doc_2", "demo.3", "Claude_4"]
    assert [(t.wave, t.wave_name) for t in full_plan.tasks] == [
        (0, "fixes"),
        (0, "fixes"),
        (1, "wave-2"),
        (1, "wave-2"),
    ]
    assert full_plan.task("demo.3").prompt == "Try the demo."
    with pytest.raises(KeyError):
        full_plan.task("nope")


def test_defaults_apply_to_a_task_that_sets_nothing(full_plan: Plan) -> None:
    """A task without overrides gets every [defaults] value, with units parsed."""
    task = full_plan.task("fix-1")
    assert task.branch == "feature/fix-1"
    assert task.prompt == "Fix the first bug."
    assert task.settings == TaskSettings(
        agent="mine",
        retries=1,
        retry_delay=90.0,
        timeout=5400.0,
        stall_timeout=600.0,
        kill_grace=5.0,
        workdir="src",
        isolation="worktree",
        min_free_memory=1024**3,
        extra_args=("--fast",),
    )


def test_task_keys_override_defaults(full_plan: Plan) -> None:
    """Every key a task sets replaces the default, including zero and an empty list."""
    task = full_plan.task("doc_2")
    assert task.branch is None
    assert task.settings == TaskSettings(
        agent="smart",
        retries=0,
        retry_delay=2.5,
        timeout=600.0,
        stall_timeout=90.0,
        kill_grace=0.5,
        workdir="docs/api",
        isolation="none",
        min_free_memory=1048576,
        extra_args=(),
    )


def test_partial_override_keeps_the_other_defaults(full_plan: Plan) -> None:
    """A task overriding only its agent keeps all other [defaults] values."""
    settings = full_plan.task("demo.3").settings
    assert settings.agent == "demo"
    assert settings.retries == 1
    assert settings.timeout == 5400.0
    assert settings.extra_args == ("--fast",)


def test_prompt_file_is_read_relative_to_the_plan_file(full_plan: Plan) -> None:
    """prompt_file is resolved against the plan's directory, not the current directory."""
    assert full_plan.task("doc_2").prompt == "Document the API.\n"


def test_plan_dir_and_python_are_expanded_in_agent_commands(full_plan: Plan, tmp_path: Path) -> None:
    """{plan_dir} and {python} in an agent's command and env become the plan's directory and this Python."""
    mine = full_plan.agents["mine"]
    plan_dir = str(tmp_path / "plans")
    assert mine.command == (sys.executable, f"{plan_dir}/agent.py", "--flag")
    assert dict(mine.env) == {"AGENT_HOME": f"{plan_dir}/home", "MODE": "quiet"}
    assert mine.kind == "plain"
    assert mine.extra_args == ("-v",)
    assert full_plan.agents["smart"].command == ("claude", "-p")
    assert full_plan.agents["smart"].kind == "claude"


def test_builtin_agents_are_known_without_declaring_them(full_plan: Plan) -> None:
    """Every plan knows "claude" (stream-json kind) and "demo" (this Python, plain kind)."""
    assert full_plan.agents["claude"] == dict(KINDS.catalog().agents)["claude"]
    assert full_plan.agents["claude"].kind == "claude"
    assert full_plan.agents["claude"].command[0] == "claude"
    assert full_plan.agents["demo"].kind == "plain"
    assert full_plan.agents["demo"].command == (sys.executable, "-m", "supervisor.agents.demo")
    assert full_plan.task("Claude_4").settings.agent == "claude"


def test_minimal_plan_takes_every_default(tmp_path: Path) -> None:
    """A plan with one task gets the file stem as name, jobs 2, the documented task defaults and no repo."""
    plan = load_plan(write_plan(tmp_path, TASK, "tonight.toml"))
    assert plan.name == "tonight"
    assert plan.repo is None
    assert plan.base is None
    assert plan.worktree_root is None
    assert plan.jobs == 2
    assert [w.name for w in plan.waves] == ["wave-1"]
    assert plan.task("a").settings == TaskSettings()
    assert TaskSettings().agent == "claude"
    assert sorted(plan.agents) == ["claude", "codex", "demo", "gemini", "opencode"]


def test_wave_names_default_to_their_position(tmp_path: Path) -> None:
    """An unnamed wave is called wave-N (1-based) even between named ones."""
    text = (
        '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "p"\n'
        '[[waves]]\nname = "middle"\n[[waves.tasks]]\nid = "b"\nprompt = "p"\n'
        '[[waves]]\n[[waves.tasks]]\nid = "c"\nprompt = "p"\n'
    )
    plan = load_plan(write_plan(tmp_path, text))
    assert [w.name for w in plan.waves] == ["wave-1", "middle", "wave-3"]


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ('"90s"', 90.0),
        ('"10m"', 600.0),
        ('"1h30m"', 5400.0),
        ('"1h"', 3600.0),
        ('"250ms"', 0.25),
        ('"45"', 45.0),
        ("45", 45.0),
        ("2.5", 2.5),
        ("0", 0.0),
    ],
)
def test_durations_accept_units_and_numbers(tmp_path: Path, written: str, seconds: float) -> None:
    """A duration is a string with h/m/s/ms units or a number of seconds."""
    plan = load_plan(write_plan(tmp_path, f"[defaults]\nretry_delay = {written}\n" + TASK))
    assert plan.task("a").settings.retry_delay == seconds


@pytest.mark.parametrize(
    ("written", "size"),
    [('"512M"', 512 * 1024**2), ('"2G"', 2 * 1024**3), ('"1.5GiB"', int(1.5 * 1024**3)), ("1000", 1000)],
)
def test_sizes_accept_units_and_numbers(tmp_path: Path, written: str, size: int) -> None:
    """min_free_memory is a size with K/M/G/T units (powers of 1024) or a number of bytes."""
    plan = load_plan(write_plan(tmp_path, f"[defaults]\nmin_free_memory = {written}\n" + TASK))
    assert plan.task("a").settings.min_free_memory == size


def test_plan_is_frozen(full_plan: Plan) -> None:
    """The loaded plan, its tasks and its agent table cannot be changed."""
    with pytest.raises(dataclasses.FrozenInstanceError):
        full_plan.jobs = 9  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        full_plan.tasks[0].settings.retries = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        full_plan.agents["x"] = full_plan.agents["demo"]  # type: ignore[index]


def test_loading_creates_nothing(tmp_path: Path) -> None:
    """load_plan only reads: the plan's directory holds the same files afterwards."""
    write_plan(tmp_path, FULL_PLAN)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "doc.md").write_text("Doc.", encoding="utf-8")
    before = sorted(tmp_path.rglob("*"))
    load_plan(tmp_path / "plan.toml")
    assert sorted(tmp_path.rglob("*")) == before


def test_uid_depends_on_the_plan_path(tmp_path: Path) -> None:
    """The plan uid is stable for one file and differs between two files."""
    one = write_plan(tmp_path / "one", TASK)
    two = write_plan(tmp_path / "two", TASK)
    assert load_plan(one).uid == load_plan(one).uid
    assert load_plan(one).uid != load_plan(two).uid


GOOD_BRANCHES = ["main", "feature/fix-1", "pagent/nightly/a.b", "user@host", "a-b_c", "v1.2", "a@"]
# "@" alone is left out: "git check-ref-format --branch @" expands it to the current branch.
BAD_BRANCHES = [
    "-x", "a@{1}", "HEAD", "a..b", "a//b", "/a", "a/", "a.", "a b", "a\tb", "a\x7fb", "a~1", "a^", "a:b",
    "a?", "a*", "a[0]", "a\\b", "x/.hidden", ".x", "x.lock", "a/b.lock/c",
]  # fmt: skip


@pytest.mark.parametrize("name", GOOD_BRANCHES)
def test_valid_branch_names_have_no_problem(name: str) -> None:
    """Names git check-ref-format accepts are accepted."""
    assert branch_problem(name) is None


def test_branch_rules_agree_with_git(tmp_path: Path) -> None:
    """branch_problem accepts and refuses the same sample names as the installed git's check-ref-format."""

    def git_accepts(name: str) -> bool:
        done = subprocess.run(
            ["git", "check-ref-format", "--branch", name], cwd=tmp_path, capture_output=True, check=False
        )
        return done.returncode == 0

    assert [name for name in GOOD_BRANCHES if not git_accepts(name)] == []
    assert [name for name in BAD_BRANCHES if git_accepts(name)] == []
    assert [name for name in BAD_BRANCHES if branch_problem(name) is None] == []


# -- bad plans --------------------------------------------------------------------------------


def task(extra: str, task_id: str = "a") -> str:
    """One wave with one task ``task_id`` with a prompt, plus the TOML lines in ``extra``."""
    return f'[[waves]]\n[[waves.tasks]]\nid = "{task_id}"\nprompt = "Do it."\n{extra}\n'


def with_branch(branch: str) -> str:
    """A plan whose only task asks for the branch ``branch`` (a TOML basic string)."""
    return task(f"branch = {branch}")


def with_id(task_id: str) -> str:
    """A plan whose only task has the id ``task_id`` (a TOML basic string)."""
    return f"[[waves]]\n[[waves.tasks]]\nid = {task_id}\nprompt = 'p'\n"


AGENT = '[agents.x]\ncommand = ["run-x"]\n'

T0 = "waves[0].tasks[0]"

# (test id, plan text, what the message must start with after "plan.toml: ", a fragment it must contain)
BAD_PLANS: list[tuple[str, str | bytes, str, str]] = [
    # the file itself
    (
        "toml-syntax",
        'jobs = \n[[waves]]\n[[waves.tasks]]\nid = "a"\n',
        "invalid TOML: ",
        "(at line 1, column 8)",
    ),
    ("toml-duplicate-key", task("retries = 1\nretries = 2"), "invalid TOML: ", "line 6, column"),
    ("not-utf8", b'name = "caf\xe9"\n' + TASK.encode(), "not UTF-8 text: ", "at byte 11"),
    ("empty-file", "", "waves: ", "no [[waves]]"),
    ("no-waves", 'name = "x"\n', "waves: ", "no [[waves]]"),
    ("waves-empty-list", "waves = []\n", "waves: ", "no [[waves]]"),
    ("waves-not-a-list", "waves = 3\n", "waves: ", "expected `array`"),
    (
        "wave-without-tasks",
        TASK + '[[waves]]\nname = "second"\n',
        "waves[1]: ",
        "'second' has no [[waves.tasks]]",
    ),
    ("task-not-a-table", "[[waves]]\ntasks = [1]\n", T0 + ": ", "expected `object`"),
    (
        "name-with-space",
        'name = "my plan"\n' + TASK,
        "name: 'my plan' cannot be used in branch names: ",
        "spaces",
    ),
    (
        "name-with-dot-dot",
        'name = "../up"\n' + TASK,
        "name: '../up' cannot be used in branch names: ",
        "'..'",
    ),
    # unknown keys
    ("unknown-top-level-key", 'colour = "red"\n' + TASK, "colour: unknown key", ""),
    ("unknown-quoted-top-level-key", '"a\\nb" = 1\n' + TASK, '"a\\nb": unknown key', ""),
    ("unknown-task-key", task("retry = 3"), T0 + ".retry: unknown key", ""),
    ("unknown-defaults-key", "[defaults]\ntimeout_s = 3\n" + TASK, "defaults.timeout_s: unknown key", ""),
    (
        "unknown-wave-key",
        TASK.replace("[[waves]]\n", "[[waves]]\ntitle = 'x'\n"),
        "waves[0].title: unknown key",
        "",
    ),
    ("unknown-agent-key", AGENT + "cmd = 'y'\n" + TASK, "agents.x.cmd: unknown key", ""),
    # wrong types
    ("string-for-int", task('retries = "3"'), T0 + ".retries: ", "expected `int`"),
    ("string-for-jobs", 'jobs = "4"\n' + TASK, "jobs: ", "expected `int`"),
    ("float-for-int", task("retries = 1.5"), T0 + ".retries: ", "expected `int`"),
    ("bool-for-duration", task("timeout = true"), T0 + ".timeout: ", "got `bool`"),
    (
        "bool-for-default-duration",
        "[defaults]\nretry_delay = false\n" + TASK,
        "defaults.retry_delay: ",
        "bool",
    ),
    (
        "list-for-string",
        task('prompt_file = ["p.md"]').replace('prompt = "Do it."\n', ""),
        T0 + ".prompt_file: ",
        "array",
    ),
    ("list-for-name", 'name = ["x"]\n' + TASK, "name: ", "expected `str`"),
    ("int-for-branch", task("branch = 3"), T0 + ".branch: ", "expected `str`"),
    ("string-for-list", task('extra_args = "--fast"'), T0 + ".extra_args: ", "expected `array`"),
    ("int-in-list", task("extra_args = [1]"), T0 + ".extra_args[0]: ", "expected `str`"),
    ("table-for-defaults", "defaults = 3\n" + TASK, "defaults: ", "expected `object`"),
    ("float-for-size", task("min_free_memory = 1.5"), T0 + ".min_free_memory: ", "float"),
    # ranges
    ("jobs-zero", "jobs = 0\n" + TASK, "jobs: ", "got 0"),
    ("jobs-negative", "jobs = -1\n" + TASK, "jobs: ", "got -1"),
    (
        "retries-negative",
        TASK + '[[waves.tasks]]\nid = "b"\nprompt = "p"\nretries = -1\n',
        "waves[0].tasks[1].retries: ",
        "got -1",
    ),
    ("defaults-retries-negative", "[defaults]\nretries = -1\n" + TASK, "defaults.retries: ", "got -1"),
    # durations
    ("negative-duration-number", task("retry_delay = -5"), T0 + ".retry_delay: ", "got -5"),
    ("negative-duration-string", task('kill_grace = "-1s"'), T0 + ".kill_grace: ", "got '-1s'"),
    (
        "negative-default-duration",
        "[defaults]\nstall_timeout = -0.5\n" + TASK,
        "defaults.stall_timeout: ",
        "-0.5",
    ),
    ("garbage-duration", task('stall_timeout = "soon"'), T0 + ".stall_timeout: ", "got 'soon'"),
    ("duration-with-words", task('timeout = "10 minutes"'), T0 + ".timeout: ", "'10 minutes'"),
    ("duration-in-days", task('timeout = "1d"'), T0 + ".timeout: ", "'1d'"),
    ("duration-missing-unit", task('timeout = "1m30"'), T0 + ".timeout: ", "'1m30'"),
    ("duration-empty", task('retry_delay = ""'), T0 + ".retry_delay: ", "got ''"),
    ("duration-nan", task("timeout = nan"), T0 + ".timeout: ", "nan"),
    ("duration-inf", task("stall_timeout = inf"), T0 + ".stall_timeout: ", "inf"),
    ("timeout-zero", task("timeout = 0"), T0 + ".timeout: ", "expected a duration > 0, got 0"),
    ("timeout-zero-string", task('timeout = "0s"'), T0 + ".timeout: ", "got '0s'"),
    ("stall-timeout-zero", "[defaults]\nstall_timeout = 0\n" + TASK, "defaults.stall_timeout: ", "> 0"),
    # sizes
    ("garbage-size", task('min_free_memory = "lots"'), T0 + ".min_free_memory: ", "got 'lots'"),
    ("negative-size", "[defaults]\nmin_free_memory = -1\n" + TASK, "defaults.min_free_memory: ", "got -1"),
    ("size-unknown-unit", task('min_free_memory = "3X"'), T0 + ".min_free_memory: ", "'3X'"),
    # ids
    ("missing-id", '[[waves]]\n[[waves.tasks]]\nprompt = "p"\n', T0 + ": missing required key 'id'", ""),
    (
        "duplicate-id-in-wave",
        TASK + '[[waves.tasks]]\nid = "a"\nprompt = "p"\n',
        "waves[0].tasks[1].id: ",
        "duplicate id 'a' (first at waves[0].tasks[0])",
    ),
    (
        "duplicate-id-across-waves",
        TASK + TASK,
        "waves[1].tasks[0].id: ",
        "duplicate id 'a' (first at waves[0].tasks[0])",
    ),
    ("id-parent", with_id('"../x"'), T0 + ".id: ", "'../x' is not a safe id"),
    ("id-space", with_id('"a b"'), T0 + ".id: ", "'a b' is not a safe id"),
    ("id-hidden", with_id('".hidden"'), T0 + ".id: ", "'.hidden' is not a safe id"),
    ("id-dash", with_id('"-x"'), T0 + ".id: ", "'-x' is not a safe id"),
    ("id-lock", with_id('"x.lock"'), T0 + ".id: ", "'x.lock' is not a safe id"),
    ("id-slash", with_id('"a/b"'), T0 + ".id: ", "'a/b' is not a safe id"),
    ("id-dot-dot", with_id('"a..b"'), T0 + ".id: ", "'a..b' is not a safe id"),
    ("id-empty", with_id('""'), T0 + ".id: ", "'' is not a safe id"),
    ("id-newline", with_id('"a\\nb"'), T0 + ".id: ", "'a\\nb' is not a safe id"),
    ("id-integer", with_id("3"), T0 + ".id: ", "expected `str`"),
    # branches: one case per rule of git check-ref-format that plan.branch_problem implements
    ("branch-empty", with_branch('""'), T0 + ".branch: ", "length >= 1"),
    ("branch-leading-dash", with_branch('"-x"'), T0 + ".branch: ", "must not start with '-'"),
    ("branch-at", with_branch('"@"'), T0 + ".branch: ", "must not be '@'"),
    ("branch-at-brace", with_branch('"a@{1}"'), T0 + ".branch: ", "'@{'"),
    ("branch-dot-dot", with_branch('"a..b"'), T0 + ".branch: ", "'..'"),
    ("branch-double-slash", with_branch('"a//b"'), T0 + ".branch: ", "'//'"),
    ("branch-leading-slash", with_branch('"/a"'), T0 + ".branch: ", "'/a' must not start or end"),
    ("branch-trailing-slash", with_branch('"a/"'), T0 + ".branch: ", "'a/' must not start or end"),
    ("branch-trailing-dot", with_branch('"a."'), T0 + ".branch: ", "end with '.'"),
    ("branch-space", with_branch('"a b"'), T0 + ".branch: ", "spaces"),
    ("branch-tab", with_branch('"a\\tb"'), T0 + ".branch: ", "control characters"),
    ("branch-newline", with_branch('"a\\nb"'), T0 + ".branch: ", "control characters"),
    ("branch-delete", with_branch('"a\\u007fb"'), T0 + ".branch: ", "control characters"),
    ("branch-tilde", with_branch('"a~1"'), T0 + ".branch: ", "~^:?*["),
    ("branch-caret", with_branch('"a^"'), T0 + ".branch: ", "~^:?*["),
    ("branch-colon", with_branch('"a:b"'), T0 + ".branch: ", "~^:?*["),
    ("branch-question", with_branch('"a?"'), T0 + ".branch: ", "~^:?*["),
    ("branch-star", with_branch('"a*"'), T0 + ".branch: ", "~^:?*["),
    ("branch-bracket", with_branch('"a[0]"'), T0 + ".branch: ", "~^:?*["),
    ("branch-backslash", with_branch('"a\\\\b"'), T0 + ".branch: ", "~^:?*["),
    ("branch-hidden-component", with_branch('"x/.hidden"'), T0 + ".branch: ", "starting with '.'"),
    ("branch-hidden", with_branch('".x"'), T0 + ".branch: ", "starting with '.'"),
    ("branch-head", with_branch('"HEAD"'), T0 + ".branch: ", "must not be 'HEAD'"),
    ("branch-lock", with_branch('"x.lock"'), T0 + ".branch: ", "ending with '.lock'"),
    ("branch-lock-component", with_branch('"a/b.lock/c"'), T0 + ".branch: ", "ending with '.lock'"),
    (
        "duplicate-branch",
        task('branch = "topic"') + '[[waves]]\n[[waves.tasks]]\nid = "b"\nprompt = "p"\nbranch = "topic"\n',
        "waves[1].tasks[0].branch: ",
        "'topic' is also the branch of waves[0].tasks[0]",
    ),
    # prompts
    (
        "missing-prompt",
        '[[waves]]\n[[waves.tasks]]\nid = "a"\n',
        T0 + ": ",
        "missing 'prompt' or 'prompt_file'",
    ),
    ("prompt-and-prompt-file", task('prompt_file = "p.md"'), T0 + ": ", "not both"),
    (
        "missing-prompt-file",
        '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt_file = "nope.md"\n',
        T0 + ".prompt_file: ",
        "no such file",
    ),
    ("empty-prompt", '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = ""\n', T0 + ": ", "the prompt is empty"),
    ("blank-prompt", '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "  \\n\\t"\n', T0 + ": ", "empty"),
    (
        "empty-prompt-file-name",
        '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt_file = ""\n',
        T0 + ".prompt_file: ",
        "",
    ),
    # agents
    (
        "unknown-default-agent",
        '[defaults]\nagent = "nope"\n' + TASK,
        "defaults.agent: ",
        "unknown agent 'nope' (known: claude, codex, demo, gemini, opencode)",
    ),
    (
        "unknown-task-agent",
        AGENT + task('agent = "nope"'),
        T0 + ".agent: ",
        "known: claude, codex, demo, gemini, opencode, x",
    ),
    ("empty-agent-name", task('agent = ""'), T0 + ".agent: ", "length >= 1"),
    ("agent-empty-command", "[agents.x]\ncommand = []\n" + TASK, "agents.x.command: ", "length >= 1"),
    ("agent-empty-argument", '[agents.x]\ncommand = [""]\n' + TASK, "agents.x.command[0]: ", "length >= 1"),
    (
        "agent-without-command",
        "[agents.x]\nkind = 'plain'\n" + TASK,
        "agents.x: missing required key 'command'",
        "",
    ),
    (
        "agent-command-string",
        '[agents.x]\ncommand = "run-x"\n' + TASK,
        "agents.x.command: ",
        "expected `array`",
    ),
    ("second-agent-bad", AGENT + "[agents.y]\ncommand = []\n" + TASK, "agents.y.command: ", ""),
    ("agent-invalid-kind", AGENT + 'kind = "shell"\n' + TASK, "agents.x.kind: ", "'shell'"),
    (
        "agent-env-not-string",
        AGENT + "env = { TOKEN = 1 }\n" + TASK,
        "agents.x.env.TOKEN: ",
        "expected `str`",
    ),
    ("agent-not-a-table", "[agents]\nx = 3\n" + TASK, "agents.x: ", "expected `object`"),
    ("agent-unsafe-name", '[agents."a b"]\ncommand = ["y"]\n' + TASK, 'agents."a b": ', "got 'a b'"),
    # isolation and workdir
    ("isolation-foo", task('isolation = "foo"'), T0 + ".isolation: ", "'foo'"),
    (
        "defaults-isolation-foo",
        '[defaults]\nisolation = "docker"\n' + TASK,
        "defaults.isolation: ",
        "'docker'",
    ),
    ("workdir-absolute", task('workdir = "/etc"'), T0 + ".workdir: ", "got '/etc'"),
    ("workdir-parent", task('workdir = "../elsewhere"'), T0 + ".workdir: ", "inside the worktree"),
    (
        "workdir-parent-inside",
        "[defaults]\nworkdir = 'a/../../b'\n" + TASK,
        "defaults.workdir: ",
        "'a/../../b'",
    ),
    ("workdir-empty", task('workdir = ""'), T0 + ".workdir: ", "length >= 1"),
]


@pytest.mark.parametrize(
    ("text", "starts", "fragment"),
    [pytest.param(text, starts, fragment, id=case) for case, text, starts, fragment in BAD_PLANS],
)
def test_bad_plan_is_one_line_naming_file_and_key(
    tmp_path: Path, text: str | bytes, starts: str, fragment: str
) -> None:
    """Each bad plan raises PlanError with one line: the file's name, the key path, then what is wrong."""
    (tmp_path / "p.md").write_text("A prompt.", encoding="utf-8")
    path = write_plan(tmp_path, text)
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert "\n" not in message
    assert "\r" not in message
    assert message.startswith(f"plan.toml: {starts}"), message
    assert fragment in message
    assert caught.value.exit_code == 2


def test_missing_plan_file_is_one_line_naming_it(tmp_path: Path) -> None:
    """A plan file that does not exist is a PlanError naming the file and saying why."""
    with pytest.raises(PlanError) as caught:
        load_plan(tmp_path / "absent.toml")
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("absent.toml: cannot read plan")
    assert str(tmp_path / "absent.toml") in message
    assert "No such file" in message


def test_file_stem_unusable_in_branch_names_needs_a_name(tmp_path: Path) -> None:
    """A file stem git refuses in branch names fails at load time, asking for a 'name'."""
    path = write_plan(tmp_path, TASK, "my plan.toml")
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert message.startswith("my plan.toml: name: 'my plan' (from the file name; set 'name'")
    assert "\n" not in message
    (tmp_path / "my plan.toml").write_text('name = "my-plan"\n' + TASK, encoding="utf-8")
    assert load_plan(path).name == "my-plan"


def test_unreadable_prompt_file_is_one_line(tmp_path: Path) -> None:
    """A prompt file that is not UTF-8 is reported at its key, in one line."""
    (tmp_path / "bad.md").write_bytes(b"\xff\xfe oops")
    path = write_plan(tmp_path, '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt_file = "bad.md"\n')
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("plan.toml: waves[0].tasks[0].prompt_file: cannot read")


def test_blank_prompt_file_is_an_empty_prompt(tmp_path: Path) -> None:
    """A prompt file holding only whitespace is rejected like an empty inline prompt."""
    (tmp_path / "blank.md").write_text("\n  \n", encoding="utf-8")
    path = write_plan(tmp_path, '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt_file = "blank.md"\n')
    with pytest.raises(PlanError, match=r"^plan\.toml: waves\[0\]\.tasks\[0\]: the prompt is empty$"):
        load_plan(path)
