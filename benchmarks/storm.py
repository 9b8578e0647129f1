"""7. Rate-limit storm: 16 tasks, 8 at a time, an API that answers 429 for the first N seconds.

The agent is a Claude-kind stand-in (``storm_agent.py``) that replays the real CLI's stream-json
of a plain 429 while the storm lasts (from the first attempt's start: a file every attempt
reads) and of a success after it. Two variants of the same plan, side by
side: every task through one agent (one rate-limit gate), and every task through an agent of
its own (a gate per task: each task alone with its backoff, as before issue 19). Measured: the
attempts started during the storm; the most attempts started within any ``rate_limit_delay``
after the first 429 answered (the probes: target at most one); how long after the storm's end
the run was done (the drain), against the gate's closure that was running when the storm ended
(from the last 429 to the first success: target at most one such delay).
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import tomli_w

from benchmarks.harness import HERE, Context, Section, Target, empty_repo, interleave, run_pagent

TASKS, JOBS = 16, 8
FULL = {"storm": 10.0, "delay": 2.0, "answer": 0.1, "work": 0.1}
QUICK = {"storm": 1.0, "delay": 0.2, "answer": 0.02, "work": 0.02}
AGENT = HERE / "storm_agent.py"


def _plan(path: Path, state: Path, repo: Path, *, own_gates: bool, delay: float) -> Path:
    path.parent.mkdir(parents=True)
    names = [f"cc{n:02d}" for n in range(TASKS)] if own_gates else ["cc"]
    agent = {"command": [sys.executable, str(AGENT), str(state)], "kind": "claude", "preflight": False}
    table = {
        "name": "storm",
        "jobs": JOBS,
        "repo": str(repo),
        "defaults": {
            "agent": names[0],
            "isolation": "none",
            "min_free_memory": "0",
            "retries": 0,
            "rate_limit_delay": delay,
            "rate_limit_retries": 20,
        },
        "agents": dict.fromkeys(names, agent),
        "waves": [
            {
                "name": "w",
                "tasks": [
                    {"id": f"t{n:02d}", "prompt": "work", "agent": names[n % len(names)]}
                    for n in range(TASKS)
                ],
            }
        ],
    }
    path.write_text(tomli_w.dumps(table), encoding="utf-8")
    return path


def _measure(plan: Path, until: float, end: float, p: dict[str, float]) -> dict[str, float]:
    """What one run shows, from its attempts as the state database recorded them (an attempt's
    start is recorded before its agent is launched, its end when the supervisor saw it)."""
    with closing(sqlite3.connect(plan.parent / ".pagent" / "state.db")) as db:
        rows = db.execute("SELECT started_at, ended_at, reason FROM attempts ORDER BY started_at").fetchall()
    limited = [(start, stop) for start, stop, reason in rows if reason == "rate-limited"]
    first_ok = min(start for start, _, reason in rows if reason == "ok")
    first_429 = min(stop for _, stop in limited)  # the gate closed here
    probes = [start for start, _ in limited if start >= first_429]
    per_delay = max((sum(p0 <= q < p0 + p["delay"] for q in probes) for p0 in probes), default=0)
    # The closure the first success ended: from the last 429 before it (jitter included).
    closure = first_ok - max(stop for _, stop in limited if stop <= first_ok)
    return {
        "during": float(len(limited)),  # the attempts the storm answered (by the agent's clock)
        "per_delay": float(per_delay),
        "drain": end - until,
        "closure": closure,
        "ratio": (end - until) / closure if closure > 0 else float("inf"),
    }


def run(ctx: Context) -> Section:
    p = QUICK if ctx.quick else FULL
    section = Section(
        "storm",
        f"7. Rate-limit storm: {TASKS} tasks, {JOBS} at a time, 429 for {p['storm']:g} s, "
        f"rate_limit_delay {p['delay']:g} s",
    )
    section.params = {"tasks": TASKS, "jobs": JOBS, **p, "reps": ctx.reps}
    work = ctx.work / "storm"
    work.mkdir()
    labels = {False: "one gate (one agent)", True: "a gate per task (before: each task's own backoff)"}
    rows: dict[bool, dict[str, Any]] = {}
    for own, label in labels.items():
        rows[own] = {
            "during": section.row(f"{label}: attempts started during the storm", "attempts"),
            "per_delay": section.row(
                f"{label}: most starts within one delay after the first 429", "attempts"
            ),
            "drain": section.row(f"{label}: done after the storm's end", "s"),
        }
        if not own:  # one gate has one closure at a time (each task's own would be any of 16)
            rows[own]["closure"] = section.row(f"{label}: closure running at the storm's end", "s")
            rows[own]["ratio"] = section.row(f"{label}: done after the storm / that closure", "x")

    def variant(own: bool) -> Any:
        def one(rep: int) -> None:
            folder = work / f"{'own' if own else 'one'}-{rep}"
            state = folder / "storm.json"
            plan = _plan(folder / "plan.toml", state, empty_repo(ctx), own_gates=own, delay=p["delay"])
            state.write_text(json.dumps(p))
            began = time.time()
            timed = run_pagent(plan.parent, "run", plan, "--quiet")
            # The storm began with the first attempt (storm_agent.py wrote when).
            until = float(state.with_name(state.name + ".began").read_text()) + p["storm"]
            found = _measure(plan, until, began + timed.wall, p)
            for key, stats in rows[own].items():
                stats.add(found[key])
            shutil.rmtree(folder)

        return one

    interleave(ctx.reps, {labels[False]: variant(False), labels[True]: variant(True)})
    gate = rows[False]
    section.targets += [
        Target("one gate: most starts within one delay (storm)", gate["per_delay"].median, 1.0),
        Target("one gate: done after the storm / closure then", gate["ratio"].median, 1.0),
    ]
    section.notes.append(
        "the drain is the rest of the closure running when the storm ended plus the work left "
        f"(one probe, then {TASKS - 1} tasks {JOBS} at a time, {p['work']:g} s each)"
    )
    return section
