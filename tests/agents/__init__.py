"""Fake agents (the scripts in this directory) and helpers for the tests that run them for real.

Every script reads its prompt from stdin like a real agent, then misbehaves in one specific way:
``hang`` (silent, idle), ``stubborn`` (ignores SIGTERM), ``detach`` (leaves a daemon holding its
stdout), ``burn`` and ``burn_children`` (compute silently), ``tick`` (prints while idle),
``introspect`` (reports how it was started) and ``worker`` (for supervisor-signal tests).
Handshakes are files written atomically (``_daemon.write_atomic``); tests wait for them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anyio
import psutil
import tomli_w

AGENTS = Path(__file__).parent

# The settings: a silent, idle agent is stopped after 2 s, SIGKILL follows SIGTERM after 1 s.
LIVENESS = {"retries": 0, "stall_timeout": "2s", "kill_grace": "1s", "timeout": "1m"}


def agent(script: str, *args: str | Path | float) -> list[str]:
    """A task's ``extra_args`` that make the plan's ``py`` agent run ``script`` with ``args``."""
    return [str(AGENTS / script), *(str(a) for a in args)]


def write_plan(
    plans: Path,
    repo: Path,
    tasks: Mapping[str, Sequence[str]],
    *,
    jobs: int = 4,
    defaults: Mapping[str, Any] = LIVENESS,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Path:
    """A one-wave plan on ``repo``: task id -> agent argv (see ``agent``), settings per task."""
    plans.mkdir(parents=True, exist_ok=True)
    plan: dict[str, Any] = {
        "name": "liveness",
        "repo": os.path.relpath(repo, plans),
        "jobs": jobs,
        "defaults": {"agent": "py", **defaults},
        "agents": {"py": {"command": ["{python}"]}},
        "waves": [
            {
                "name": "only",
                "tasks": [
                    {"id": task_id, "prompt": f"do {task_id}", "extra_args": list(argv)}
                    | dict((overrides or {}).get(task_id, {}))
                    for task_id, argv in tasks.items()
                ],
            }
        ],
    }
    path = plans / "plan.toml"
    path.write_text(tomli_w.dumps(plan))
    return path


def wait_for(ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once ``ready()`` holds (a handshake); fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


async def await_file(path: Path, timeout: float = 10) -> str:
    """The content of ``path`` once a fake agent has written it (atomically)."""
    with anyio.fail_after(timeout):
        while not path.exists():  # noqa: ASYNC110 - another process writes it: nothing to wait on
            await anyio.sleep(0.02)
    return path.read_text()


def process(pid_file: Path) -> psutil.Process:
    """The process whose pid ``pid_file`` holds (remembering its start time against pid reuse)."""
    return psutil.Process(int(pid_file.read_text().split()[0]))


def running(proc: psutil.Process) -> bool:
    """True while ``proc`` itself (not a reuse of its pid) runs; a zombie has stopped running."""
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_all(procs: Sequence[psutil.Process]) -> None:
    """SIGKILL whatever of ``procs`` still runs (test clean-up after a failure)."""
    for proc in procs:
        if running(proc):
            proc.kill()
