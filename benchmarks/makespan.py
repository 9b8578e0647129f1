"""6. Makespan: one wave of 24 tasks with heavy-tailed durations, 4 at a time, run twice.

Each task's agent sleeps its own duration (``sh -c 'read d; exec sleep "$d"'``, the duration as
its prompt): a few long tasks, many short ones, in a fixed plan order in which the longest comes
19th of 24. The first run of the plan has no history, so its tasks start in plan order; the
second run has the first one's durations and starts the longest expected first. Both are timed
as whole ``pagent-run`` commands (start-up included) and compared with the lower bound of any
schedule, ``max(longest task, total work / jobs)``, and with GNU parallel running the same
sleeps ``-j4`` in plan order. The wave's own makespan (first attempt's start to last attempt's
end, from the state database) is reported too.
"""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import tomli_w

from benchmarks.harness import (
    Context,
    Section,
    Target,
    empty_repo,
    ensure_tool,
    interleave,
    run_pagent,
    run_timed,
)

JOBS = 4
# Heavy-tailed, in plan order (a fixed shuffle): seconds.
DURATIONS = (
    0.45, 0.75, 0.45, 1.2, 0.6, 0.45, 0.45, 9.0, 0.9, 0.6, 6.0, 0.9,
    0.75, 1.8, 0.45, 0.6, 0.45, 3.0, 12.0, 4.5, 2.4, 0.45, 1.5, 0.45,
)  # fmt: skip
QUICK_SCALE = 0.03
AGENT = ["sh", "-c", 'read -r d; exec sleep "$d"']


def _plan(path: Path, durations: tuple[float, ...], repo: Path) -> Path:
    path.parent.mkdir(parents=True)
    table = {
        "name": "makespan",
        "jobs": JOBS,
        "repo": str(repo),
        "defaults": {
            "agent": "sleeper",
            "isolation": "none",
            "min_free_memory": "0",
            "retries": 0,
            "stall_timeout": "1h",
        },
        "agents": {"sleeper": {"command": AGENT}},
        "waves": [
            {
                "name": "w",
                "tasks": [{"id": f"t{n:02d}", "prompt": f"{d:g}\n"} for n, d in enumerate(durations)],
            }
        ],
    }
    path.write_text(tomli_w.dumps(table), encoding="utf-8")
    return path


def _wave_makespan(plan: Path) -> float:
    """The latest run's first attempt start to its last attempt end, from the state database."""
    with closing(sqlite3.connect(plan.parent / ".pagent" / "state.db")) as db:
        (run_id,) = db.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()
        first, last = db.execute(
            "SELECT MIN(started_at), MAX(ended_at) FROM attempts WHERE run_id = ?", (run_id,)
        ).fetchone()
    return float(last - first)


def run(ctx: Context) -> Section:
    scale = QUICK_SCALE if ctx.quick else 1.0
    durations = tuple(round(d * scale, 4) for d in DURATIONS)
    longest, total = max(durations), sum(durations)
    bound = max(longest, total / JOBS)
    section = Section(
        "makespan",
        f"6. Makespan: {len(durations)} tasks ({total:.1f} s of work, longest {longest:g} s), "
        f"{JOBS} at a time; lower bound {bound:.2f} s",
    )
    section.params = {"jobs": JOBS, "durations": durations, "lower_bound": bound, "reps": ctx.reps}
    work = ctx.work / "makespan"
    work.mkdir()
    first = section.row("pagent-run, first run (no history: plan order)", "s")
    second = section.row("pagent-run, second run (longest expected first)", "s")
    wave = section.row("pagent-run, second run: the wave alone (state database)", "s")
    parallel = ensure_tool("parallel", "parallel", ctx.install)
    gnu = section.row(f"GNU parallel -j{JOBS}, plan order", "s") if parallel else None
    variants = {}

    def pagent(rep: int) -> None:
        plan = _plan(work / f"rep{rep}" / "plan.toml", durations, empty_repo(ctx))
        first.add(run_pagent(plan.parent, "run", plan, "--quiet").wall)
        second.add(run_pagent(plan.parent, "run", plan, "--quiet").wall)
        wave.add(_wave_makespan(plan))
        shutil.rmtree(plan.parent)

    variants["pagent-run (two runs)"] = pagent
    if parallel and gnu is not None:
        argv = [parallel, f"-j{JOBS}", "--will-cite", "sleep", ":::", *(f"{d:g}" for d in durations)]
        variants["parallel"] = lambda rep: gnu.add(run_timed(argv, cwd=work).wall)
    else:
        section.notes.append("GNU parallel is not installed (and could not be): its comparison is skipped")
    interleave(ctx.reps, variants)
    section.targets.append(Target("second run / lower bound (wall)", second.median / bound, 1.1))
    if gnu is not None:
        section.targets.append(
            Target("second run / GNU parallel in plan order (wall)", second.median / gnu.median, 1.0)
        )
    section.notes.append(
        f"first run / lower bound {first.median / bound:.2f}; the wave alone on the second run "
        f"{wave.median / bound:.3f} x the bound"
    )
    return section
