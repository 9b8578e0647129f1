"""Hostile prompts: templates with format specs, prompt files that never end, block or are huge.

Issue 12 promises that validation catches format specs in prompts (which today validate and
then crash the run at render time) and prompt files that are not regular files or exceed a size
limit (which today are read without limit or block ``validate`` for ever). The installed
``pagent``; ``validate`` runs with 1 GiB of address space, so that reading /dev/zero cannot take
the machine's memory.
Each case was written first against code that did not hold it (issue 12); every one holds now.
"""

from __future__ import annotations

import os
import resource
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import bin_path, git
from tests.hostile import never_crashes, one_line_error, rejected, write_plan

pytestmark = pytest.mark.slow  # real processes (README, "Tests")


def _one_task(tmp_path: Path, repo: Path, **task: Any) -> Path:
    return write_plan(tmp_path / "plans", repo, {"a": task})


def _limited_memory() -> None:
    # A plan that reads /dev/zero must not take the shared machine's memory with it.
    resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))


def validate_bounded(plan: Path, seconds: float = 5) -> subprocess.CompletedProcess[str] | None:
    """``pagent validate`` with 1 GiB of address space; ``None`` if it has not ended in ``seconds``."""
    try:
        return subprocess.run(
            [str(bin_path("pagent")), "validate", str(plan)],
            capture_output=True,
            text=True,
            timeout=seconds,
            stdin=subprocess.DEVNULL,
            preexec_fn=_limited_memory,
            check=False,
        )
    except subprocess.TimeoutExpired:  # run() has killed it
        return None


# -- prompts -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        pytest.param("{task_id!z}", id="unknown-conversion"),
        pytest.param("{task_id:d}", id="int-spec-on-str"),
        pytest.param("{task_id:>99999999999999999999}", id="absurd-width"),
        pytest.param("{task_id!r}", id="repr-conversion"),
    ],
)
def test_format_specs_in_a_prompt_are_plan_errors(tmp_path: Path, repo: Path, template: str) -> None:
    """A placeholder with a conversion or format spec validates today and then either crashes
    the run at render time (ValueError in prompts.render) or renders something else ('a')."""
    rejected(_one_task(tmp_path, repo, prompt=f"write x.txt {template}"), "waves[0].tasks[0].prompt")


def test_a_plain_placeholder_and_doubled_braces_still_validate(tmp_path: Path, repo: Path) -> None:
    """The baseline the fix must keep: ``{task_id}`` and ``{{literal}}`` are fine."""
    plan = _one_task(tmp_path, repo, prompt="write x.txt {task_id} {{literal}}")
    view = never_crashes(plan)
    assert git(repo, "show", f"{view['tasks'][0]['branch']}:x.txt") == "a {literal}\n"


# -- prompt files --------------------------------------------------------------------------------


def _fifo(tmp_path: Path) -> str:
    path = tmp_path / "plans" / "prompt.fifo"
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    return str(path)


def _huge(tmp_path: Path) -> str:
    path = tmp_path / "plans" / "huge.md"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:
        f.write(b"write x.txt x\n")
        f.truncate(2 << 30)  # 2 GiB, sparse: no disk used
    return str(path)


@pytest.mark.parametrize(
    ("make", "where"),
    [
        pytest.param(lambda tmp: "/dev/zero", "task", id="prompt_file-/dev/zero"),
        pytest.param(_fifo, "task", id="prompt_file-fifo"),
        pytest.param(_fifo, "plan", id="context_file-fifo"),
        pytest.param(_huge, "task", id="prompt_file-2GiB"),
    ],
)
def test_prompt_files_that_are_not_small_regular_files_are_refused_at_once(
    tmp_path: Path, repo: Path, make: Any, where: str
) -> None:
    """Before issue 12, /dev/zero is read until memory runs out (MemoryError: internal error, with 1 GiB
    of address space), a FIFO blocks ``validate`` for ever, a 2 GiB file is read whole."""
    path = make(tmp_path)
    if where == "task":
        plan = _one_task(tmp_path, repo, prompt_file=path)
    else:
        plan = write_plan(tmp_path / "plans", repo, {"a": {}}, top={"context_file": path})
    done = validate_bounded(plan)
    assert done is not None, "pagent validate did not end within 5 s"
    assert done.returncode == 2, done.stderr
    assert one_line_error(done), done.stderr


def test_a_prompt_file_that_is_a_directory_is_a_plan_error(tmp_path: Path, repo: Path) -> None:
    """Holds: exit 2 with one line naming the key."""
    rejected(_one_task(tmp_path, repo, prompt_file="."), "waves[0].tasks[0].prompt_file")
