"""Helpers for the hostile black-box tests (``tests/test_hostile_*.py``).

They drive the installed ``pagent-run`` and ``pagent`` on real git repositories, with the
hostile agent ``tests/agents/rogue.py`` (its prompt lists what it does) and real git hooks.
``Reaper`` remembers what a test started and, at the end, kills whatever of it is still alive:
the supervisors it started and every process whose command line or working directory lies in
the test's own ``tmp_path`` (hooks, git, daemons), each by its pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil
import tomli_w

from tests.conftest import bin_path, cli, status_json

AGENTS = Path(__file__).parent / "agents"
ROGUE = AGENTS / "rogue.py"

# Small limits, so every wait of a hostile case is short and bounded.
QUICK = {
    "agent": "rogue",
    "retries": 0,
    "retry_delay": "0.1s",
    "timeout": "20s",
    "stall_timeout": "10s",
    "kill_grace": "1s",
    "min_free_memory": 0,
}


def write_plan(
    plans: Path,
    repo: Path,
    tasks: Mapping[str, Mapping[str, Any]],
    *,
    name: str | None = "h",
    defaults: Mapping[str, Any] | None = None,
    top: Mapping[str, Any] | None = None,
    agents: Mapping[str, Mapping[str, Any]] | None = None,
    waves: Sequence[Sequence[str]] | None = None,
    file: str = "plan.toml",
) -> Path:
    """A plan on ``repo`` whose tasks (id -> table) run the rogue agent by default.

    ``waves`` groups task ids into waves (default: one wave of every task); ``top`` adds
    top-level keys, ``agents`` more agents; a task's ``prompt`` may be a list of action lines.
    """
    plans.mkdir(parents=True, exist_ok=True)
    table: dict[str, Any] = {"repo": os.path.relpath(repo, plans), "jobs": 4}
    if name is not None:
        table["name"] = name
    table.update(top or {})
    table["defaults"] = {**QUICK, **(defaults or {})}
    table["agents"] = {"rogue": {"command": ["{python}", str(ROGUE)]}, **(agents or {})}
    groups = waves or [list(tasks)]
    table["waves"] = []
    for group in groups:
        entries = []
        for task_id in group:
            entry = {"id": task_id, **tasks[task_id]}
            if isinstance(entry.get("prompt"), list):
                entry["prompt"] = "\n".join(entry["prompt"])
            if "prompt" not in entry and "prompt_file" not in entry:
                entry["prompt"] = "write work.txt work"
            entries.append(entry)
        table["waves"].append({"tasks": entries})
    path = plans / file
    path.write_text(tomli_w.dumps(table))
    return path


def run(plan: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``pagent-run PLAN ARGS`` to its end."""
    return cli(bin_path("pagent-run"), plan, *args, timeout=timeout)


def pagent(*args: str | Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """``pagent ARGS`` to its end."""
    return cli(bin_path("pagent"), *args, timeout=timeout)


def one_line_error(done: subprocess.CompletedProcess[str]) -> bool:
    """The README's rule for bad input: one clear line, no traceback, no internal error."""
    lines = done.stderr.strip().splitlines()
    return (
        len(lines) == 1
        and "Traceback" not in done.stderr
        and "internal error" not in done.stderr
        and lines[0].startswith("pagent: ")
    )


def wait_for(ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once ``ready()`` holds; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def ended_within(proc: subprocess.Popen[bytes], seconds: float) -> int | None:
    """``proc``'s exit code if it ends within ``seconds``, else ``None`` (it is left running)."""
    try:
        return proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        return None


def reachable(repo: Path, commit: str) -> list[str]:
    """The refs (any namespace) from which ``commit`` can be reached."""
    out = subprocess.run(
        ["git", "for-each-ref", "--contains", commit, "--format=%(refname)"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return out.split()


def alive(pid: int) -> bool:
    """True while the process ``pid`` runs (a zombie does not)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def pid_from(path: Path) -> int:
    """The pid a hook or agent wrote into ``path``."""
    return int(path.read_text().split()[0])


def hook(repo: Path, name: str, body: str) -> Path:
    """Install the shell hook ``name`` in ``repo`` (shared by all its worktrees)."""
    hooks = repo / ".git" / "hooks"
    hooks.mkdir(parents=True, exist_ok=True)
    path = hooks / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def hanging_hook(repo: Path, name: str, pidfile: Path) -> Path:
    """A hook that records its pid in ``pidfile`` and then never returns."""
    return hook(repo, name, f'echo $$ > "{pidfile}.tmp" && mv "{pidfile}.tmp" "{pidfile}"\nexec sleep 3600')


class Reaper:
    """Starts supervisors in the background; at teardown kills whatever the test left alive."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, plan: Path, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """``pagent-run PLAN ARGS`` in the background, in a session of its own, output to a file."""
        out = self.tmp_path / f"pagent-run.{len(self.started)}.out"
        with out.open("wb") as sink:
            proc = subprocess.Popen(
                [str(bin_path("pagent-run")), str(plan), *args],
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # signals reach it only from the test
                env=None if env is None else dict(env),
            )
        self.started.append((proc, out))
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        """Everything ``proc`` printed so far."""
        return next(out for p, out in self.started if p is proc).read_text(errors="replace")

    def leftovers(self) -> list[psutil.Process]:
        """Live processes (not this one) whose command line or cwd lies in the test's tmp_path."""
        me = os.getpid()
        found = []
        for proc in psutil.process_iter(["pid", "cmdline", "cwd", "status"]):
            with contextlib.suppress(psutil.Error):
                if proc.pid == me or proc.info["status"] == psutil.STATUS_ZOMBIE:
                    continue
                text = " ".join(proc.info["cmdline"] or []) + " " + (proc.info["cwd"] or "")
                if str(self.tmp_path) in text:
                    found.append(proc)
        return found

    def cleanup(self) -> None:
        for proc, _ in self.started:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        for leftover in self.leftovers():
            with contextlib.suppress(psutil.Error):
                leftover.kill()


@contextlib.contextmanager
def reaping(tmp_path: Path) -> Iterator[Reaper]:
    """A ``Reaper`` for one test (see the module docstring); each test file's fixture uses it."""
    started = Reaper(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()


class FifoTrap:
    """A FIFO where git expects a file (e.g. ``.git/info/attributes``): git blocks opening it
    and, once the test holds the write end, blocks reading it -- a hang without any hook."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(path)
        self._fd: int | None = None

    def wait_for_reader(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> bool:
        """Hold the write end once some process has the FIFO open for reading (the handshake);
        False if none did within ``timeout`` seconds (or ``proc`` ended first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and (proc is None or proc.poll() is None):
            try:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError:  # ENXIO: nobody reads it yet
                time.sleep(0.02)
                continue
            return True
        return False

    def disarm(self) -> None:
        """Remove the FIFO (a reader that has it open keeps waiting while we hold the writer)."""
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        """Close the write end: a reader still waiting sees EOF."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def tasks_by_id(plan: Path) -> dict[str, dict[str, Any]]:
    """The latest run's tasks of ``plan`` (``pagent status --json``), by id."""
    return {t["id"]: t for t in status_json(plan)["tasks"]}


def ended_cleanly(plan: Path, done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """Assert that a run ended 0 or 1 without an internal error, no task left pending or
    running, its summary written; return its status view."""
    assert "internal error" not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert done.returncode in (0, 1), done.stderr
    view = status_json(plan)
    assert view["status"] in ("succeeded", "failed"), view["status"]
    assert not [t["id"] for t in view["tasks"] if t["state"] in ("pending", "running")]
    assert (plan.parent / ".pagent" / "runs" / view["run_id"] / "summary.json").exists()
    return view


def rejected(plan: Path, key: str) -> None:
    """Assert that ``pagent validate`` refuses the plan: exit 2, one line naming ``key``."""
    done = pagent("validate", plan, timeout=10)
    assert done.returncode == 2, f"validate accepted it: {done.stdout.strip()}"
    assert one_line_error(done), done.stderr
    assert key in done.stderr, done.stderr


def never_crashes(plan: Path) -> dict[str, Any]:
    """Assert that a plan ``validate`` accepts runs to a clean end (see ``ended_cleanly``)."""
    assert pagent("validate", plan).returncode == 0
    return ended_cleanly(plan, run(plan))
