"""``pagent validate`` and ``pagent-run``: a bad plan is one line and exit 2, and nothing is created.

Each case runs in-process through click's CliRunner and, for a subset, through the installed
console scripts as real subprocesses, on a plan inside a real git repository in ``tmp_path``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import structlog
from click.testing import CliRunner

from supervisor.ui.cli import pagent, pagent_run

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

BIN = Path(sys.executable).parent

GOOD_PLAN = """\
name = "tonight"
base = "main"

[defaults]
agent = "demo"
retries = 0

[[waves]]
name = "first"

[[waves.tasks]]
id = "fix-1"
prompt = "Fix one."

[[waves.tasks]]
id = "fix-2"
prompt_file = "prompt.md"
isolation = "none"

[[waves]]

[[waves.tasks]]
id = "summary"
prompt = "Sum up."
"""

TASK = '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt = "Do a."\n'

# name -> plan text; None means the plan file is not there at all
BAD_PLANS: dict[str, str | None] = {
    "unknown-key": 'colour = "red"\n' + TASK,
    "toml-syntax": "jobs = \n" + TASK,
    "duplicate-id": TASK + TASK,
    "negative-retries": TASK + "retries = -1\n",
    "missing-prompt-file": '[[waves]]\n[[waves.tasks]]\nid = "a"\nprompt_file = "absent.md"\n',
    "unsafe-id": TASK.replace('"a"', '"../a"'),
    "missing-plan-file": None,
}


@dataclass(frozen=True)
class Outcome:
    """What one command invocation did."""

    code: int
    stdout: str
    stderr: str


# An identity, no user or system config: git behaves the same on every machine.
GIT_ENV = {
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.com",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.com",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
}


@pytest.fixture(autouse=True)
def git_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Use GIT_ENV here (in-process and in children), and never find a repository above tmp_path."""
    for name, value in GIT_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))


@pytest.fixture(autouse=True)
def keep_structlog_config() -> Iterator[None]:
    """pagent-run configures structlog for the process; put the previous configuration back."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` and return its stdout."""
    return subprocess.run(
        ["git", *args], cwd=repo, capture_output=True, text=True, check=True, env={**os.environ, **GIT_ENV}
    ).stdout


@pytest.fixture(scope="module")
def template_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository with one commit on ``main``, made once and copied by each test."""
    root = tmp_path_factory.mktemp("template") / "repo"
    root.mkdir()
    git(root, "init", "--quiet", "--initial-branch=main")
    (root / "README").write_text("hello\n", encoding="utf-8")
    git(root, "add", "README")
    git(root, "commit", "--quiet", "-m", "first")
    return root


@pytest.fixture
def repo(tmp_path: Path, template_repo: Path) -> Path:
    """This test's own copy of the template repository, at ``tmp_path/repo``."""
    root = tmp_path / "repo"
    shutil.copytree(template_repo, root, symlinks=True)
    return root


def snapshot(tmp_path: Path) -> list[str]:
    """Every path under tmp_path, the repository's .git included (refs, worktrees, index)."""
    return sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))


def assert_nothing_created(tmp_path: Path, repo: Path, before: list[str]) -> None:
    """No file or directory appeared or vanished, and git still has one branch and one worktree."""
    assert snapshot(tmp_path) == before
    assert not (repo / ".pagent").exists()
    assert git(repo, "for-each-ref", "--format=%(refname)", "refs/heads/") == "refs/heads/main\n"
    worktrees = git(repo, "worktree", "list", "--porcelain").splitlines()
    assert [line for line in worktrees if line.startswith("worktree ")] == [f"worktree {repo}"]


def invoke(how: str, argv: list[str], cwd: Path) -> Outcome:
    """Run ``argv`` (a console-script name and its arguments) in-process or as a subprocess."""
    if how == "subprocess":
        done = subprocess.run(
            [str(BIN / argv[0]), *argv[1:]],
            cwd=cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
        return Outcome(done.returncode, done.stdout, done.stderr)
    command: click.Command = pagent if argv[0] == "pagent" else pagent_run
    result = CliRunner().invoke(command, argv[1:], prog_name=argv[0])
    # Only a deliberate sys.exit is acceptable; anything else is a crash.
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return Outcome(result.exit_code, result.stdout, result.stderr)


def assert_one_line_error(outcome: Outcome, plan_name: str) -> None:
    """Exit 2, nothing on stdout, and exactly one "pagent: <plan>: ..." line on stderr."""
    assert outcome.code == 2, outcome
    assert "Traceback" not in outcome.stderr + outcome.stdout
    assert outcome.stdout == ""
    assert outcome.stderr.endswith("\n")
    assert outcome.stderr.count("\n") == 1, outcome.stderr
    assert outcome.stderr.startswith(f"pagent: {plan_name}: "), outcome.stderr


def write_bad_plan(repo: Path, case: str) -> Path:
    """Put the bad plan ``case`` into the repository (or nothing, for a missing plan)."""
    path = repo / "plan.toml"
    text = BAD_PLANS[case]
    if text is not None:
        path.write_text(text, encoding="utf-8")
    return path


COMMANDS = {
    "validate": ["pagent", "validate"],
    "run": ["pagent-run"],
    "dry-run": ["pagent-run", "--dry-run"],
    "group-run": ["pagent", "run", "--dry-run"],
}


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_bad_plan_in_process(tmp_path: Path, repo: Path, case: str, command: str) -> None:
    """Every command given a bad plan exits 2 with one line on stderr and creates nothing."""
    plan = write_bad_plan(repo, case)
    before = snapshot(tmp_path)
    outcome = invoke("clirunner", [*COMMANDS[command], str(plan)], repo)
    assert_one_line_error(outcome, "plan.toml")
    assert_nothing_created(tmp_path, repo, before)


@pytest.mark.parametrize(
    ("case", "command"),
    [
        ("unknown-key", "validate"),
        ("toml-syntax", "run"),
        ("duplicate-id", "dry-run"),
        ("missing-plan-file", "validate"),
    ],
)
def test_bad_plan_through_the_console_script(tmp_path: Path, repo: Path, case: str, command: str) -> None:
    """The installed pagent / pagent-run, as real processes, exit 2 with one line and create nothing."""
    write_bad_plan(repo, case)
    before = snapshot(tmp_path)
    outcome = invoke("subprocess", [*COMMANDS[command], "plan.toml"], repo)
    assert_one_line_error(outcome, "plan.toml")
    assert_nothing_created(tmp_path, repo, before)


@pytest.fixture
def good_plan(repo: Path) -> Path:
    """GOOD_PLAN and its prompt file inside the repository."""
    (repo / "prompt.md").write_text("Fix two.\n", encoding="utf-8")
    path = repo / "plan.toml"
    path.write_text(GOOD_PLAN, encoding="utf-8")
    return path


@pytest.mark.parametrize("how", ["clirunner", "subprocess"])
def test_validate_accepts_a_good_plan(tmp_path: Path, repo: Path, good_plan: Path, how: str) -> None:
    """pagent validate on a good plan exits 0, says ok with the counts, and creates nothing."""
    before = snapshot(tmp_path)
    outcome = invoke(how, ["pagent", "validate", str(good_plan)], repo)
    assert (outcome.code, outcome.stderr) == (0, "")
    assert outcome.stdout == "plan.toml: ok (3 tasks in 2 waves)\n"
    assert_nothing_created(tmp_path, repo, before)


@pytest.mark.parametrize("how", ["clirunner", "subprocess"])
def test_dry_run_lists_every_task_and_creates_nothing(
    tmp_path: Path, repo: Path, good_plan: Path, how: str
) -> None:
    """pagent-run --dry-run exits 0, prints every task id, and creates no state, branch or worktree."""
    before = snapshot(tmp_path)
    outcome = invoke(how, ["pagent-run", str(good_plan), "--dry-run"], repo)
    assert (outcome.code, outcome.stderr) == (0, "")
    assert "3 tasks in 2 waves" in outcome.stdout
    assert "'first'" in outcome.stdout
    assert "'wave-2'" in outcome.stdout
    for task_id in ("fix-1", "fix-2", "summary"):
        assert f"  {task_id}: agent demo" in outcome.stdout
    assert_nothing_created(tmp_path, repo, before)
    assert not (tmp_path / "repo.worktrees").exists()


# Plans that load but name a repository or base that is not there: caught before anything is made.
WRONG_PLACE = {
    "missing-base": ('base = "no-such-branch"\n', "plan.toml: base: 'no-such-branch': no such commit"),
    "repo-not-git": ('repo = "../plain"\n', "plan.toml: repo: not inside a git repository: "),
    "repo-missing": ('repo = "../absent"\n', "plan.toml: repo: no such directory: "),
}


@pytest.mark.parametrize(
    ("case", "how"),
    [
        *((case, "clirunner") for case in WRONG_PLACE),
        ("missing-base", "subprocess"),
        ("repo-not-git", "subprocess"),
    ],
)
def test_run_with_a_wrong_repo_or_base_creates_nothing(
    tmp_path: Path, repo: Path, case: str, how: str
) -> None:
    """pagent-run on a plan whose base or repo is wrong exits 2 with one line before creating anything."""
    (tmp_path / "plain").mkdir()
    header, message = WRONG_PLACE[case]
    plan = repo / "plan.toml"
    plan.write_text(header + '[defaults]\nagent = "demo"\n' + TASK, encoding="utf-8")
    before = snapshot(tmp_path)
    outcome = invoke(how, ["pagent-run", str(plan)], repo)
    assert_one_line_error(outcome, "plan.toml")
    assert outcome.stderr.startswith(f"pagent: {message}"), outcome.stderr
    assert_nothing_created(tmp_path, repo, before)
