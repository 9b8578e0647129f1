"""End to end: workspaces that start ready -- ``setup``, ``before_attempt`` and ``teardown`` hooks,
``copy`` and ``.worktreeinclude`` -- with the installed ``pagent-run`` and ``pagent`` on real git
repositories (a fresh clone among them), real hook processes, and the answer command's refusals.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from tests.conftest import bin_path, cli, git, status_json

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

# The agent: it needs what $NEEDS names (paths in its working directory), fails while the
# prompt says "fail-until N" and N is not reached or "fail-unless FILE" and FILE (absolute) is
# missing, records each attempt in $JOURNAL, and leaves its result uncommitted (auto-commit).
AGENT = r"""
import os, sys, time
from pathlib import Path
task, attempt = os.environ["PAGENT_TASK_ID"], int(os.environ["PAGENT_ATTEMPT"])
with open(os.environ["JOURNAL"], "a") as journal:
    journal.write(f"{task} {attempt}\n")
script = dict(line.split(" ", 1) for line in sys.stdin.read().splitlines() if " " in line)
for need in filter(None, os.environ.get("NEEDS", "").split(",")):
    if not Path(need).is_file():
        print(f"missing {need}", flush=True)
        sys.exit(4)
if attempt < int(script.get("fail-until", "0")):
    print("failing on purpose", flush=True)
    sys.exit(1)
if "fail-unless" in script and not Path(script["fail-unless"]).exists():
    sys.exit(1)
if "wait-for" in script:
    deadline = time.monotonic() + 60
    while not Path(script["wait-for"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
Path("result").mkdir(exist_ok=True)
env = Path(".env").read_text().strip() if Path(".env").exists() else "-"
Path("result", f"{task}.txt").write_text(f"{task} done, .env says {env}\n")
"""


def count_line(path: Path, label: str) -> list[str]:
    """A hook command that appends ``label PAGENT_TASK_ID PAGENT_ATTEMPT`` to ``path``."""
    code = (
        "import os, sys; "
        f"open({str(path)!r}, 'a').write('{label} ' + os.environ['PAGENT_TASK_ID'] + ' ' "
        "+ os.environ['PAGENT_ATTEMPT'] + chr(10))"
    )
    return [sys.executable, "-c", code]


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def write_plan(path: Path, repo: Path, tasks: list[dict[str, Any]], needs: str = "", **defaults: Any) -> Path:
    agent = path.parent / "agent.py"
    agent.write_text(AGENT)
    table = {
        "repo": os.path.relpath(repo, path.parent),
        "jobs": 2,
        "defaults": {
            "agent": "needy",
            "retries": 0,
            "retry_delay": "0.1s",
            "timeout": "1m",
            "kill_grace": "1s",
            "min_free_memory": "1M",
            **defaults,
        },
        "agents": {
            "needy": {
                "command": ["{python}", str(agent)],
                "env": {"JOURNAL": str(path.parent / "journal.txt"), "NEEDS": needs},
            }
        },
        "waves": [{"name": "one", "tasks": tasks}],
    }
    path.write_text(tomli_w.dumps(table))
    return path


def tasks_of(plan: Path) -> dict[str, dict[str, Any]]:
    return {task["id"]: task for task in status_json(plan)["tasks"]}


def log_of(plan: Path, task: str, attempt: int | None = None) -> str:
    extra = ["--attempt", str(attempt)] if attempt else []
    done = cli(bin_path("pagent"), "logs", plan, task, *extra)
    assert done.returncode == 0, done.stderr
    return done.stdout


def committed(repo: Path, branch: str) -> list[str]:
    """Every path of the branch's tip."""
    return git(repo, "ls-tree", "-r", "--name-only", branch).split()


def test_a_fresh_clone_gets_its_setup_file_and_its_env(tmp_path: Path, repo: Path) -> None:
    """Issue 18's "done when": tasks that need a file ``setup`` creates and an ignored ``.env``
    copied from the main worktree succeed on a fresh clone; neither is ever committed."""
    (repo / ".gitignore").write_text(".env\nbuild/\n")
    git(repo, "add", ".gitignore")
    git(repo, "commit", "--quiet", "-m", "ignore .env and build/")
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "--quiet", str(repo), str(clone))
    (clone / ".env").write_text("TOKEN=from-the-main-worktree\n")  # the person's own, ignored
    plans = clone / "plans"
    plans.mkdir()
    made = (
        "import pathlib; pathlib.Path('build').mkdir(); "
        "pathlib.Path('build/tool.txt').write_text('built'); print('setup built the tool')"
    )
    plan = write_plan(
        plans / "plan.toml",
        clone,
        [{"id": "one", "prompt": "work"}, {"id": "two", "prompt": "work"}],
        needs=".env,build/tool.txt",
        setup=[[sys.executable, "-c", made]],
        copy=[".env"],
        require_changes=True,
    )
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = tasks_of(plan)
    for task_id in ("one", "two"):
        task = tasks[task_id]
        assert (task["state"], task["attempts"]) == ("succeeded", 1)
        worktree = Path(task["worktree"])
        assert (worktree / ".env").read_text() == "TOKEN=from-the-main-worktree\n"
        assert (worktree / "build" / "tool.txt").is_file()
        assert committed(clone, task["branch"]) == [".gitignore", "README.md", f"result/{task_id}.txt"]
        assert task["diff"]["paths"] == [f"result/{task_id}.txt"]
        assert task["diff"]["uncommitted"] is False
        assert "TOKEN=from-the-main-worktree" in git(clone, "show", f"{task['branch']}:result/{task_id}.txt")
        log = log_of(plan, task_id)
        assert "[pagent] setup: " in log
        assert "setup built the tool" in log
        assert "[pagent] setup: exit 0" in log
    assert git(clone, "status", "--porcelain").split() == ["??", "plans/"]  # the main worktree as it was


def test_setup_once_per_workspace_before_attempt_every_time_teardown_on_clean(
    tmp_path: Path, repo: Path
) -> None:
    """``setup`` runs once per workspace (not again on a retry, again when it is recreated),
    ``before_attempt`` before every attempt, ``teardown`` when ``pagent clean`` removes it."""
    hooks = tmp_path / "hooks.txt"
    flag = tmp_path / "fixed.flag"
    plan = write_plan(
        tmp_path / "plan.toml",
        repo,
        [
            {"id": "flaky", "prompt": "fail-until 2", "retries": 2},
            {"id": "broken", "prompt": f"fail-unless {flag}"},
        ],
        setup=[count_line(hooks, "setup")],
        before_attempt=[count_line(hooks, "before")],
        teardown=[count_line(hooks, "teardown")],
    )
    first = cli(bin_path("pagent-run"), plan)
    assert first.returncode == 1, first.stderr
    tasks = tasks_of(plan)
    assert (tasks["flaky"]["state"], tasks["flaky"]["attempts"]) == ("succeeded", 2)
    assert (tasks["broken"]["state"], tasks["broken"]["reason"]) == ("failed", "exit 1")
    assert sorted(lines(hooks)) == sorted(
        ["setup flaky 1", "before flaky 1", "before flaky 2", "setup broken 1", "before broken 1"]
    )
    assert "[pagent] before_attempt: " in log_of(plan, "flaky", 2)
    assert "[pagent] setup: " not in log_of(plan, "flaky", 2)

    hooks.unlink()
    cleaned = cli(bin_path("pagent"), "clean", plan)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 2 worktree(s)" in cleaned.stdout
    assert sorted(lines(hooks)) == ["teardown broken 1", "teardown flaky 2"]
    run_dir = plan.parent / ".pagent" / "runs" / status_json(plan)["run_id"]
    assert "[pagent] teardown: " in (run_dir / "logs" / "broken.teardown.log").read_text()

    hooks.unlink()
    flag.write_text("fixed\n")
    again = cli(bin_path("pagent-run"), plan, "--retry-failed")
    assert again.returncode == 0, again.stderr
    assert lines(hooks) == ["setup broken 2", "before broken 2"]  # the workspace was made anew


def test_a_failing_setup_fails_the_attempt_and_is_retried(tmp_path: Path, repo: Path) -> None:
    """Reason ``setup: ...``, retried like any failure, the agent never started; then it runs
    again on the retry (it has not succeeded in that workspace yet)."""
    hooks = tmp_path / "hooks.txt"
    failing = [sys.executable, "-c", "import sys; print('no compiler here'); sys.exit(3)"]
    plan = write_plan(
        tmp_path / "plan.toml",
        repo,
        [{"id": "t", "prompt": "work"}],
        retries=1,
        setup=[count_line(hooks, "setup"), failing],
    )
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 1
    task = tasks_of(plan)["t"]
    assert (task["state"], task["attempts"]) == ("failed", 2)
    assert task["reason"].startswith("setup: `")
    assert task["reason"].endswith("` exit 3")
    assert [h["reason"] for h in task["history"]] == [task["reason"]] * 2
    assert lines(hooks) == ["setup t 1", "setup t 2"]
    assert not (tmp_path / "journal.txt").exists()  # the agent never ran
    assert "no compiler here" in log_of(plan, "t", 1)
    assert task["session_id"] is None
    assert f"t ({task['reason']})" in done.stdout  # the summary says why


def test_a_hanging_setup_is_stopped_at_its_timeout(tmp_path: Path, repo: Path) -> None:
    pid_file = tmp_path / "setup.pid"
    hang = [
        sys.executable,
        "-c",
        f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)",
    ]
    plan = write_plan(
        tmp_path / "plan.toml", repo, [{"id": "t", "prompt": "work"}], setup=[hang], setup_timeout="2s"
    )
    started = time.monotonic()
    done = cli(bin_path("pagent-run"), plan)
    took = time.monotonic() - started
    print(f"\nhanging setup: pagent-run took {took:.1f}s")
    assert done.returncode == 1
    assert took < 20
    task = tasks_of(plan)["t"]
    assert task["reason"].endswith("timed out after 2s")
    pid = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "[pagent] setup: timed out after 2s" in log_of(plan, "t")


def test_copies_and_worktreeinclude_are_never_committed(tmp_path: Path, repo: Path) -> None:
    """An ignored ``.env`` (by ``.worktreeinclude``) and a not-ignored ``config/local.toml``
    (by ``copy``) reach the workspace, stay out of every commit and do not stop ``clean``; a
    failing teardown is a warning and the worktree goes all the same."""
    (repo / ".gitignore").write_text(".env\n*.key\n")
    (repo / ".worktreeinclude").write_text(".env\n*.key\nREADME.md\n")
    git(repo, "add", ".gitignore", ".worktreeinclude")
    git(repo, "commit", "--quiet", "-m", "include")
    (repo / ".env").write_text("TOKEN=abc\n")
    (repo / "signing.key").write_text("KEY\n")
    (repo / "config").mkdir()
    (repo / "config" / "local.toml").write_text("port = 1\n")
    plan = write_plan(
        tmp_path / "plan.toml",
        repo,
        [{"id": "t", "prompt": "work"}],
        needs=".env,signing.key,config/local.toml",
        copy=["config/local.toml"],
        teardown=[[sys.executable, "-c", "import sys; print('cannot release'); sys.exit(2)"]],
    )
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 0, done.stdout + done.stderr
    task = tasks_of(plan)["t"]
    assert committed(repo, task["branch"]) == [".gitignore", ".worktreeinclude", "README.md", "result/t.txt"]
    assert task["diff"]["uncommitted"] is False
    worktree = Path(task["worktree"])
    assert (worktree / "config" / "local.toml").read_text() == "port = 1\n"
    assert git(worktree, "status", "--porcelain").split() == ["??", "config/"]  # left as it was

    cleaned = cli(bin_path("pagent"), "clean", plan)
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 1 worktree(s)" in cleaned.stdout
    (warning,) = cleaned.stderr.splitlines()
    assert warning.startswith("pagent: warning: teardown of t (run ")
    assert "failed: `" in warning
    assert "exit 2; see " in warning
    assert not worktree.exists()


def test_answer_is_refused_for_a_task_that_does_not_need_input_and_during_a_run(
    tmp_path: Path, repo: Path
) -> None:
    """Exit 2 naming the task's state; exit 75 while a run of the plan holds its lock."""
    go = tmp_path / "go.flag"
    plan = write_plan(tmp_path / "plan.toml", repo, [{"id": "t", "prompt": f"wait-for {go}"}])
    go.write_text("now\n")
    assert cli(bin_path("pagent-run"), plan).returncode == 0
    refused = cli(bin_path("pagent"), "answer", plan, "t", "use SQLite")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "pagent: plan.toml: t does not need input: it is succeeded (ok)"
    both = cli(bin_path("pagent"), "answer", plan, "t", "x", "--file", tmp_path / "go.flag")
    assert (both.returncode, both.stderr.strip()) == (
        2,
        "pagent: give the answer as TEXT or with --file (one of them)",
    )
    (tmp_path / "answer.md").write_text("use SQLite\n")
    from_file = cli(bin_path("pagent"), "answer", plan, "t", "--file", tmp_path / "answer.md")
    assert (from_file.returncode, from_file.stderr.strip()) == (
        2,
        refused.stderr.strip(),
    )  # read, then refused
    missing = cli(bin_path("pagent"), "answer", plan, "t", "--file", tmp_path / "none.md")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"pagent: --file {tmp_path / 'none.md'}: No such file or directory"
    unknown = cli(bin_path("pagent"), "answer", plan, "nope", "x")
    assert (unknown.returncode, unknown.stderr.strip()) == (
        2,
        "pagent: plan.toml: no task 'nope' in the plan",
    )

    go.unlink()
    proc = subprocess.Popen(
        [str(bin_path("pagent-run")), str(plan)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and lines(tmp_path / "journal.txt") != ["t 1", "t 1"]:
            time.sleep(0.05)
        locked = cli(bin_path("pagent"), "answer", plan, "t", "use SQLite")
        assert locked.returncode == 75, locked.stderr
        assert "cannot record an answer" in locked.stderr
    finally:
        go.write_text("now\n")
        proc.communicate(timeout=60)
