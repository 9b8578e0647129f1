"""5. Scale of the plan: validating an N-task plan, and ``pagent status`` of an N-task run.

The plan has N tasks in 10 waves; every other task overrides a few settings. The run is written
straight into the plan's state database through ``supervisor.store`` (a finished run, one ended
attempt per task with diff stats), exactly as a real run would have left it. Each command is
timed whole, interpreter start included, as a person at a terminal would wait for it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.harness import Context, Section, Target, empty_repo, interleave, run_pagent
from supervisor.state.records import AttemptRecord, RunRecord, RunStatus, TaskRecord, TaskState, new_run_id
from supervisor.state.store import Store

LIMIT = 1.0  # seconds
TARGETED = ("pagent validate", "pagent status")
WAVES = 10


def _plan(path: Path, tasks: int, repo: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        'name = "scale"',
        "jobs = 8",
        f"repo = {json.dumps(str(repo))}",
        "[defaults]",
        'agent = "bench"',
        'isolation = "none"',
        'timeout = "30m"',
        "retries = 1",
        "[agents.bench]",
        'command = ["/bin/true"]',
    ]
    per_wave = tasks // WAVES
    for number in range(tasks):
        if number % per_wave == 0:
            lines += ["[[waves]]", f'name = "wave-{number // per_wave}"']
        lines += [
            "[[waves.tasks]]",
            f'id = "task-{number:05d}"',
            f'prompt = "Fix issue {number} in {{worktree}}."',
        ]
        if number % 2:
            lines += ['timeout = "10m"', "retries = 3", 'retry_delay = "5s"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _record_run(plan: Path, tasks: int) -> None:
    """A finished run of every task of ``plan``, written through the store."""
    now = time.time()
    run_id = new_run_id(now - 3600)
    per_wave = tasks // WAVES
    diff = json.dumps({"commits": 1, "files": 2, "insertions": 10, "deletions": 3, "paths": ["a.py", "b.py"]})
    records = [
        TaskRecord(
            run_id=run_id,
            task_id=f"task-{n:05d}",
            wave=n // per_wave,
            wave_name=f"wave-{n // per_wave}",
            state=TaskState.SUCCEEDED if n % 10 else TaskState.FAILED,
            attempts=1,
            reason="ok" if n % 10 else "exit 1",
            exit_code=0 if n % 10 else 1,
            started_at=now - 3000 + n * 0.1,
            ended_at=now - 2900 + n * 0.1,
            diff=diff,
        )
        for n in range(tasks)
    ]
    store = Store(plan.parent / ".pagent" / "state.db")
    try:
        run = RunRecord(
            run_id=run_id,
            plan_key=plan.name,
            plan_name="scale",
            plan_path=str(plan),
            started_at=now - 3600,
            status=RunStatus.FAILED,
            ended_at=now - 100,
            exit_code=1,
        )
        store.create_run(run, records)
        for record in records:
            attempt = AttemptRecord(
                run_id=run_id,
                task_id=record.task_id,
                number=1,
                started_at=record.started_at or now,
                log_path=str(plan.parent / ".pagent" / "runs" / run_id / "logs" / f"{record.task_id}.1.log"),
                cookie=f"x:{run_id}:{record.task_id}:1",
                ended_at=record.ended_at,
                exit_code=record.exit_code,
                reason=record.reason,
            )
            store.add_attempt(attempt)
    finally:
        store.close()


def run(ctx: Context) -> Section:
    tasks = 200 if ctx.quick else 10_000
    section = Section("scale", f"5. Scale of the plan: {tasks} tasks")
    section.params = {"tasks": tasks, "waves": WAVES, "reps": ctx.reps}
    work = ctx.work / "scale"
    plan = _plan(work / "plan.toml", tasks, empty_repo(ctx))
    _record_run(plan, tasks)
    commands = {
        "pagent validate": ["validate", plan],
        "pagent status": ["status", plan],
        "pagent status --json": ["status", plan, "--json"],
    }
    rows = {name: section.row(name, "s") for name in commands}

    def timer(name: str) -> Callable[[int], None]:
        return lambda rep: rows[name].add(run_pagent(work, *commands[name]).wall)

    interleave(ctx.reps, {name: timer(name) for name in commands})
    # The targets; --json is shown for comparison (it also serialises every attempt).
    section.targets += [Target(f"{name} (s)", rows[name].median, LIMIT) for name in TARGETED]
    return section
