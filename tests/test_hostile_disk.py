"""Disks and state that fail: a full disk, a read-only plan directory, a corrupt ``state.db``,
an agent that deletes its own worktree or the run's directory.

Issue 12 promises: no internal error reaches the user for anything a disk, a repository or an
agent does: one clear line and a documented exit code, and the run's records end consistent
(no task left ``running``) whenever the supervisor is alive to write them; a corrupt
``state.db`` is named, with what to do. The full disk is a real tmpfs of 1 MiB and the
read-only directory a real read-only bind mount, where this machine lets the test mount them
(root); elsewhere those tests are skipped, saying why. Each case was written first against code that did
not hold it (issue 12); the fixes made every one hold.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import bin_path, cli, git, status_json
from tests.hostile import one_line_error, pagent, run, write_plan

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

NOISY = "import sys\nsys.stdin.read()\nfor _ in range(3000):\n    sys.stdout.write('x' * 1000 + '\\n')\n"


def _mount(args: list[str], target: Path) -> None:
    """Mount, or skip the test naming the reason (not root, no mount, no permission)."""
    try:
        done = subprocess.run(
            ["mount", *args, str(target)], capture_output=True, text=True, timeout=30, check=False
        )
    except FileNotFoundError:
        pytest.skip("no mount command on this machine")
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(args)}): {done.stderr.strip()}")


def _umount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30, check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Callable[[Path, str], Path]]:
    """Makes a directory a tmpfs of the given size (unmounted at the end)."""
    mounted: list[Path] = []

    def make(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        _mount(["-t", "tmpfs", "-o", f"size={size}", "tmpfs"], path)
        mounted.append(path)
        return path

    yield make
    for path in reversed(mounted):
        _umount(path)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Callable[[Path], None]]:
    """Makes a directory read-only with a read-only bind mount (root ignores mode bits)."""
    mounted: list[Path] = []

    def make(path: Path) -> None:
        _mount(["--bind", str(path)], path)
        mounted.append(path)
        _mount(["-o", "remount,bind,ro"], path)

    yield make
    for path in reversed(mounted):
        _umount(path)


def no_task_running(plan: Path) -> None:
    view = status_json(plan)
    assert not [t["id"] for t in view["tasks"] if t["state"] in ("running", "pending")], view["tasks"]


# -- a full disk ---------------------------------------------------------------------------------


def test_a_full_disk_while_writing_a_log_gives_one_line_and_consistent_records(
    tmp_path: Path, repo: Path, small_disk: Callable[[Path, str], Path]
) -> None:
    """The plan directory (state.db and logs) is a 1 MiB tmpfs; an agent prints 3 MB. Today
    ``_Log.write`` raises ENOSPC inside the output callback: internal error, both tasks
    ``running``. Promised: one line, exit 1, and (once space is freed) no task left running."""
    plans = small_disk(tmp_path / "plans", "1m")
    noisy = tmp_path / "noisy.py"
    noisy.write_text(NOISY)
    plan = write_plan(
        plans,
        repo,
        {"a": {"agent": "noisy"}, "b": {"prompt": "sleep 0.5\nwrite b.txt b"}},
        agents={"noisy": {"command": ["{python}", str(noisy)]}},
    )
    done = run(plan)
    for log in (plans / ".pagent" / "runs").rglob("*.log"):
        log.unlink()  # free the space, so that status can read the records
    assert done.returncode == 1
    assert "internal error" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    no_task_running(plan)


def test_a_full_worktree_disk_fails_the_task_with_a_clear_reason(
    tmp_path: Path, repo: Path, small_disk: Callable[[Path, str], Path]
) -> None:
    """Holds: ``worktree_root`` on a full 64 KiB tmpfs: ``git worktree add`` fails and the task
    fails with git's reason (No space left on device); the run ends normally."""
    full = small_disk(tmp_path / "worktrees", "64k")
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={full / 'filler'}", "bs=4k", "count=100"],
        capture_output=True,
        check=False,
    )
    plan = write_plan(tmp_path / "plans", repo, {"a": {}}, top={"worktree_root": "../worktrees"})
    done = run(plan)
    assert done.returncode == 1
    assert "internal error" not in done.stderr
    task = status_json(plan)["tasks"][0]
    assert task["state"] == "failed"
    assert "No space left on device" in task["reason"]


# -- a read-only plan directory ------------------------------------------------------------------


def test_a_read_only_plan_directory_gives_one_line(
    tmp_path: Path, repo: Path, read_only: Callable[[Path], None]
) -> None:
    """Today: "internal error: OSError: [Errno 30] Read-only file system: '.../.pagent'"."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    read_only(plan.parent)
    done = run(plan)
    assert done.returncode in (1, 2)
    assert one_line_error(done), done.stderr
    assert git(repo, "branch", "--list", "pagent/*") == ""


@pytest.mark.parametrize("command", [["status"], ["runs"], ["logs", "a"], ["report"]])
def test_read_only_commands_work_or_say_why_on_a_read_only_plan_directory(
    tmp_path: Path, repo: Path, read_only: Callable[[Path], None], command: list[str]
) -> None:
    """After a run, the plan directory becomes read-only (a backup, a read-only mount). Today
    every read-only command says "internal error: OperationalError: unable to open database
    file". Promised: it works (it changes nothing), or one clear line."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    assert run(plan).returncode == 0
    read_only(plan.parent)
    done = pagent(command[0], plan, *command[1:])
    assert done.returncode == 0 or one_line_error(done), done.stderr
    assert "internal error" not in done.stderr


# -- a corrupt state.db --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("program", "before", "after"),
    [
        pytest.param("pagent", ["status"], [], id="status"),
        pytest.param("pagent", ["runs"], [], id="runs"),
        pytest.param("pagent", ["logs"], ["a"], id="logs"),
        pytest.param("pagent", ["report"], [], id="report"),
        pytest.param("pagent", ["clean"], [], id="clean"),
        pytest.param("pagent-run", [], [], id="run"),
    ],
)
def test_a_corrupt_state_db_is_named_with_what_to_do(
    tmp_path: Path, repo: Path, program: str, before: list[str], after: list[str]
) -> None:
    """``state.db`` overwritten with garbage. Today: "internal error: DatabaseError: file is
    not a database" from every command but clean, which goes on removing worktrees without
    knowing which runs made them ("removed 1 worktree(s)")."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    assert run(plan).returncode == 0
    state = plan.parent / ".pagent"
    for path in state.glob("state.db*"):
        path.unlink()
    (state / "state.db").write_bytes(b"this is not a database\n" * 100)
    done = cli(bin_path(program), *before, plan, *after)
    assert done.returncode != 0
    assert one_line_error(done), done.stderr
    assert "state.db" in done.stderr


# -- agents destroying their workspace -----------------------------------------------------------


def test_an_agent_deleting_its_own_worktree_fails_its_task_only(tmp_path: Path, repo: Path) -> None:
    """The agent commits, then ``rm -rf``s its worktree. Today: GitError("git is not installed
    (not found on PATH)") -- the cwd is gone -- escapes: internal error, both tasks left
    ``running``. Promised: that task fails with a reason, the other succeeds, the commit stays
    on the branch."""
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {
            "a": {"prompt": "write a.txt a\ncommit a\nrm-worktree"},
            "b": {"prompt": "sleep 0.5\nwrite b.txt b"},
        },
    )
    done = run(plan)
    assert "internal error" not in done.stderr, done.stderr
    assert done.returncode == 1
    view = status_json(plan)
    assert {t["id"]: t["state"] for t in view["tasks"]} == {"a": "failed", "b": "succeeded"}
    assert git(repo, "show", "pagent/h/a:a.txt") == "a\n"


def test_an_agent_replacing_the_run_directory_by_a_file_does_not_crash_the_run(
    tmp_path: Path, repo: Path
) -> None:
    """The agent replaces the plan's ``.pagent/runs`` by a file, then fails; its retry cannot
    write its prompt there. Before issue 12, NotADirectoryError escapes: internal error, task ``pending``."""
    runs = tmp_path / "plans" / ".pagent" / "runs"
    plan = write_plan(tmp_path / "plans", repo, {"a": {"prompt": f"to-file {runs}\nexit 1", "retries": 1}})
    done = run(plan)
    assert "internal error" not in done.stderr, done.stderr
    assert done.returncode == 1
