"""Plans that would fail at night are refused when they are loaded (issue 12).

Each case is a plan that used to validate and then crash or fail every attempt at run time:
format specs in prompts, NUL bytes and ``=`` in argv and environments, ``workdir`` and
``done_marker`` naming ``.git`` or a directory, ids and branches too long for git's files,
branches that cannot coexist, prompt files that block or never end, control characters in wave
names, checks that ``isolation = "none"`` cannot hold. Real files (FIFOs, devices, sparse
files) in ``tmp_path``; git only where a case is about what git really does.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from supervisor.errors import PlanError
from supervisor.plan.across import check_memory
from supervisor.plan.files import PROMPT_LIMIT, FileProblem, read_bounded
from supervisor.plan.names import MAX_COMPONENT, MAX_ID, branch_problem, clashes, has_control
from supervisor.ui.compose import load_plan


def plan_file(
    tmp_path: Path,
    tasks: list[dict[str, Any]],
    *,
    top: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
    agents: dict[str, Any] | None = None,
    wave: dict[str, Any] | None = None,
) -> Path:
    """A plan named "h" with one wave of ``tasks`` (each gets a prompt unless it has one)."""
    table: dict[str, Any] = {"name": "h", **(top or {})}
    table["defaults"] = {"agent": "x", **(defaults or {})}
    table["agents"] = {"x": {"command": ["run-x"]}, **(agents or {})}
    entries = [{"prompt": "Do it.", **t} if "prompt_file" not in t else t for t in tasks]
    table["waves"] = [{**(wave or {}), "tasks": entries}]
    path = tmp_path / "plan.toml"
    path.write_text(tomli_w.dumps(table), encoding="utf-8")
    return path


def refused(path: Path, key: str, fragment: str = "") -> str:
    """Assert that loading ``path`` is one PlanError line naming ``key``; return the message."""
    with pytest.raises(PlanError) as caught:
        load_plan(path)
    message = str(caught.value)
    assert "\n" not in message
    assert not has_control(message), repr(message)
    assert message.startswith("plan.toml: "), message
    assert key in message, message
    assert fragment in message, message
    assert caught.value.exit_code == 2
    return message


# -- prompts ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "{task_id!r}",
        "{task_id!z}",
        "{task_id!s}",
        "{task_id:d}",
        "{task_id:>99999999999999999999}",
        "{attempt:>5}",
        "{task_id:{wave}}",
    ],
)
def test_a_placeholder_with_a_conversion_or_format_spec_is_refused(tmp_path: Path, template: str) -> None:
    """A spec used to validate and then crash the run while rendering (or change the value)."""
    path = plan_file(tmp_path, [{"id": "a", "prompt": f"Fix {template} now."}])
    refused(path, "waves[0].tasks[0].prompt", "conversion or format spec")


def test_plain_placeholders_and_doubled_braces_still_load(tmp_path: Path) -> None:
    path = plan_file(tmp_path, [{"id": "a", "prompt": "{task_id} {attempt} {{literal}} {{x!r}}"}])
    assert load_plan(path).tasks[0].prompt.startswith("{task_id}")


def test_a_pull_request_command_placeholder_with_a_spec_is_refused(tmp_path: Path) -> None:
    path = plan_file(tmp_path, [{"id": "a"}], top={"publish": {"command": ["gh", "{branch!r}"]}})
    refused(path, "publish.command[1]", "format spec")


# -- NUL and '=' -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("where", "key"),
    [
        ({"agents": {"x": {"command": ["run-x"], "env": {"K": "a\0b"}}}}, "agents.x.env.K"),
        ({"agents": {"x": {"command": ["run-x"], "env": {"K\0": "v"}}}}, "agents.x.env"),
        ({"agents": {"x": {"command": ["ru\0n-x"]}}}, "agents.x.command[0]"),
        ({"agents": {"x": {"command": ["run-x"], "extra_args": ["--x\0"]}}}, "agents.x.extra_args[0]"),
        ({"task": {"extra_args": ["a\0b"]}}, "waves[0].tasks[0].extra_args[0]"),
        ({"defaults": {"verify": ["true", "\0"]}}, "defaults.verify[1]"),
        ({"task": {"workdir": "sub\0"}}, "waves[0].tasks[0].workdir"),
        ({"task": {"prompt_file": "p\0.md"}}, "waves[0].tasks[0].prompt_file"),
        ({"task": {"prompt": "a\0b"}}, "waves[0].tasks[0].prompt"),
        ({"top": {"repo": "re\0po"}}, "repo"),
        ({"top": {"notify": {"command": ["x\0"]}}}, "notify.command[0]"),
    ],
)
def test_a_nul_anywhere_in_the_plan_is_refused(tmp_path: Path, where: dict[str, Any], key: str) -> None:
    """NUL used to reach Popen (ValueError: internal error, the task left running) or a path."""
    task = {"id": "a", **where.get("task", {})}
    path = plan_file(tmp_path, [task], top=where.get("top"), defaults=where.get("defaults"))
    if "agents" in where:
        path = plan_file(tmp_path, [task], agents=where["agents"])
    refused(path, key, "NUL")


@pytest.mark.parametrize("name", ["A=B", "=x", ""])
def test_an_environment_name_with_equals_or_empty_is_refused(tmp_path: Path, name: str) -> None:
    path = plan_file(tmp_path, [{"id": "a"}], agents={"x": {"command": ["run-x"], "env": {name: "v"}}})
    refused(path, "agents.x.env")


# -- workdir and done_marker -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("done_marker", ".git"),
        ("done_marker", ".GIT"),
        ("done_marker", ".git/index"),
        ("done_marker", "a/.git/x"),
        ("done_marker", "."),
        ("done_marker", "./"),
        ("done_marker", "sub/"),
        ("done_marker", "sub/."),
        ("workdir", ".git"),
        ("workdir", ".git/hooks"),
        ("workdir", "a/./.git"),
        ("workdir", "."),
    ],
)
def test_workdir_and_marker_naming_git_or_a_directory_are_refused(
    tmp_path: Path, setting: str, value: str
) -> None:
    """A marker '.git' made pagent delete the worktree's .git file; '.' crashed the run."""
    refused(plan_file(tmp_path, [{"id": "a", setting: value}]), f"waves[0].tasks[0].{setting}")


@pytest.mark.parametrize(
    ("setting", "value"),
    [("done_marker", ".task-complete"), ("done_marker", "out/done"), ("workdir", "a/b"), ("workdir", "sub/")],
)
def test_ordinary_workdirs_and_markers_still_load(tmp_path: Path, setting: str, value: str) -> None:
    task = load_plan(plan_file(tmp_path, [{"id": "a", setting: value}])).tasks[0]
    assert getattr(task.settings, setting) == value


# -- ids and branches ------------------------------------------------------------------------


def test_an_id_longer_than_its_file_names_allow_is_refused(tmp_path: Path) -> None:
    """A 250-character id crashed the run on prompts/<id>.1.txt (File name too long)."""
    message = refused(plan_file(tmp_path, [{"id": "a" * 250}]), "waves[0].tasks[0].id", "too long")
    assert len(message) < 200  # the id is shortened in the message
    assert load_plan(plan_file(tmp_path, [{"id": "a" * MAX_ID}])).tasks[0].id == "a" * MAX_ID


@pytest.mark.parametrize(
    "branch",
    ["b" * 300, "feat/" + "c" * (MAX_COMPONENT + 1), "/".join(["d" * 100] * 11)],
    ids=["one-long-component", "long-last-component", "long-in-total"],
)
def test_a_branch_too_long_for_git_is_refused(tmp_path: Path, branch: str) -> None:
    refused(plan_file(tmp_path, [{"id": "a", "branch": branch}]), "waves[0].tasks[0].branch", "long")


def test_the_longest_component_accepted_fits_git_with_the_run_id_suffix(tmp_path: Path) -> None:
    """What the loader accepts, git can create -- with the ``-<run id>`` pagent appends to a
    taken branch, while git holds its ``.lock`` file beside it."""
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "--quiet", str(repo)], check=True)
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "--quiet", "--allow-empty", "-m", "x"],
        cwd=repo,
        check=True,
    )
    longest = "e" * MAX_COMPONENT
    assert branch_problem(f"feat/{longest}") is None
    suffixed = f"feat/{longest}-20261124-020000.123-ab12"
    done = subprocess.run(["git", "branch", suffixed], cwd=repo, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("tasks", "top", "key"),
    [
        ([{"id": "a", "branch": "feat"}, {"id": "b", "branch": "feat/b"}], {}, "waves[0].tasks[1].branch"),
        ([{"id": "a", "branch": "feat/b"}, {"id": "b", "branch": "feat"}], {}, "waves[0].tasks[1].branch"),
        ([{"id": "a", "branch": "pagent/h/b/c"}, {"id": "b"}], {}, "waves[0].tasks[1] (its default branch)"),
        ([{"id": "a"}, {"id": "b", "branch": "pagent/h"}], {}, "waves[0].tasks[1].branch"),
        ([{"id": "a"}], {"integrate": {"branch": "pagent/h/a"}}, "integrate.branch"),
        ([{"id": "a"}], {"integrate": {"branch": "pagent/h"}}, "integrate.branch"),
        ([{"id": "a", "branch": "feat"}], {"integrate": {"branch": "feat/all"}}, "integrate.branch"),
    ],
    ids=["a-then-a/b", "a/b-then-a", "explicit-under-default", "explicit-above-defaults",
         "integrate-equal", "integrate-above", "integrate-below"],
)  # fmt: skip
def test_branches_that_cannot_coexist_are_refused(
    tmp_path: Path, tasks: list[dict[str, Any]], top: dict[str, Any], key: str
) -> None:
    """These validated, then failed a task at night ("cannot lock ref") or made the run skip
    its integration with exit 0."""
    refused(plan_file(tmp_path, tasks, top=top), key)


def test_an_explicit_branch_equal_to_another_tasks_default_still_loads(tmp_path: Path) -> None:
    """Equal names are not a clash: the second gets the run id appended, like any taken branch."""
    plan = load_plan(plan_file(tmp_path, [{"id": "a", "branch": "pagent/h/b"}, {"id": "b"}]))
    assert [t.branch for t in plan.tasks] == ["pagent/h/b", None]


def test_clashes_is_linear_on_a_large_plan() -> None:
    branches = [(f"pagent/nightly/task-{i}", f"t{i}") for i in range(20000)]
    started = time.monotonic()
    assert clashes(branches) is None
    assert clashes([*branches, ("pagent/nightly/task-7/x", "late")]) == (
        ("pagent/nightly/task-7", "t7"),
        ("pagent/nightly/task-7/x", "late"),
    )
    assert time.monotonic() - started < 1.0


# -- prompt and context files ----------------------------------------------------------------


def _fifo(tmp_path: Path) -> Path:
    path = tmp_path / "prompt.fifo"
    os.mkfifo(path)
    return path


def _sparse(tmp_path: Path) -> Path:
    path = tmp_path / "huge.md"
    with path.open("wb") as f:
        f.write(b"Do it.\n")
        f.truncate(2 << 30)
    return path


def _link_to_zero(tmp_path: Path) -> Path:
    path = tmp_path / "zero.md"
    path.symlink_to("/dev/zero")
    return path


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (_fifo, "a FIFO"),
        (lambda tmp: Path("/dev/zero"), "a character device"),
        (_link_to_zero, "a character device"),
        (lambda tmp: tmp, "a directory"),
        (_sparse, "limit"),
    ],
    ids=["fifo", "dev-zero", "symlink-to-dev-zero", "directory", "2GiB"],
)
@pytest.mark.parametrize("key", ["prompt_file", "context_file", "wave_context_file"])
def test_a_prompt_or_context_file_that_is_not_a_small_regular_file_is_refused_at_once(
    tmp_path: Path, make: Any, fragment: str, key: str
) -> None:
    """A FIFO blocked validate for ever, /dev/zero ran out of memory, a huge file was read whole."""
    target = str(make(tmp_path))
    if key == "prompt_file":
        path = plan_file(tmp_path, [{"id": "a", "prompt_file": target}])
        where = "waves[0].tasks[0].prompt_file"
    elif key == "context_file":
        path, where = plan_file(tmp_path, [{"id": "a"}], top={"context_file": target}), "context_file"
    else:
        path = plan_file(tmp_path, [{"id": "a"}], wave={"context_file": target})
        where = "waves[0].context_file"
    started = time.monotonic()
    refused(path, where, fragment)
    assert time.monotonic() - started < 2


def test_a_prompt_file_of_exactly_the_limit_loads(tmp_path: Path) -> None:
    (tmp_path / "p.md").write_text("x" * PROMPT_LIMIT, encoding="utf-8")
    plan = load_plan(plan_file(tmp_path, [{"id": "a", "prompt_file": "p.md"}]))
    assert len(plan.tasks[0].prompt) == PROMPT_LIMIT
    (tmp_path / "p.md").write_text("x" * (PROMPT_LIMIT + 1), encoding="utf-8")
    refused(tmp_path / "plan.toml", "waves[0].tasks[0].prompt_file", "1 MiB limit")


def test_a_plan_file_that_is_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "plan.toml"
    os.mkfifo(fifo)
    refused(fifo, "cannot read plan", "FIFO")


def test_read_bounded_never_reads_past_its_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"12345")
    assert read_bounded(path, 5) == b"12345"
    with pytest.raises(FileProblem):
        read_bounded(path, 4)


# -- names printed to terminals --------------------------------------------------------------


@pytest.mark.parametrize("name", ["nightly\x1b]0;PWNED\x07", "a\x9bb", "tab\there", "new\nline"])
def test_a_wave_name_with_control_characters_is_refused(tmp_path: Path, name: str) -> None:
    """A wave name is printed in event lines: it used to bring its escape sequences along."""
    refused(plan_file(tmp_path, [{"id": "a"}], wave={"name": name}), "waves[0].name", "control characters")


def test_a_wave_name_with_unicode_letters_still_loads(tmp_path: Path) -> None:
    plan = load_plan(plan_file(tmp_path, [{"id": "a"}], wave={"name": "Nächte ☾"}))
    assert plan.waves[0].name == "Nächte ☾"


# -- isolation = "none" ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        ({"done_marker": ".done"}, "waves[0].tasks[0].done_marker"),
        ({"require_changes": True}, "waves[0].tasks[0].require_changes"),
        ({"confine": True, "workdir": "sub"}, "waves[0].tasks[0].confine"),
    ],
)
def test_checks_that_need_a_worktree_are_refused_with_isolation_none(
    tmp_path: Path, settings: dict[str, Any], key: str
) -> None:
    """With isolation = "none" these were skipped silently: the task succeeded regardless."""
    refused(plan_file(tmp_path, [{"id": "a", "isolation": "none", **settings}]), key, "isolation")


def test_a_check_from_the_defaults_names_where_it_comes_from(tmp_path: Path) -> None:
    tasks: list[dict[str, Any]] = [{"id": "a"}, {"id": "b", "isolation": "none"}]
    path = plan_file(tmp_path, tasks, defaults={"done_marker": ".d"})
    refused(path, "waves[0].tasks[1].done_marker (from [defaults])")
    path = plan_file(
        tmp_path,
        [{"id": "a"}, {"id": "b", "isolation": "none", "require_changes": False}],
        defaults={"require_changes": True},
    )
    assert load_plan(path).tasks[1].settings.require_changes is False


def test_verify_with_isolation_none_loads(tmp_path: Path) -> None:
    """verify is enforced with isolation = "none" (it runs in the repository): not refused."""
    plan = load_plan(plan_file(tmp_path, [{"id": "a", "isolation": "none", "verify": ["true"]}]))
    assert plan.tasks[0].settings.verify == ("true",)


# -- memory no machine has -------------------------------------------------------------------


def test_min_free_memory_beyond_what_attempts_can_ever_have_is_refused(tmp_path: Path) -> None:
    """``min_free_memory = "1000T"`` used to wait for memory for ever; given the executor's
    limit it is a plan error naming the task's key, in people's units."""
    plan = load_plan(plan_file(tmp_path, [{"id": "a"}, {"id": "b", "min_free_memory": "1000T"}]))
    check_memory(plan, None)  # an executor that cannot tell: nothing to check
    check_memory(plan, 1000 * 2**40)
    with pytest.raises(PlanError) as caught:
        check_memory(plan, 8 * 2**30)
    assert str(caught.value) == (
        "plan.toml: waves[0].tasks[1].min_free_memory: 1000 TiB is more than the 8 GiB of memory "
        "attempts can ever have here: the task would wait for ever"
    )
    assert caught.value.exit_code == 2
