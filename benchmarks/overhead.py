"""1. Per-task overhead: N tasks whose agent does nothing, next to GNU parallel and xargs.

Each tool runs ``/bin/true`` once per task, 8 at a time: ``pagent-run`` with
``isolation = "none"`` and ``jobs = 8``, ``parallel -j8`` and ``xargs -P8 -n1``, each fed the
same N arguments. The wall time of the whole command is what counts (process start included).
"""

from __future__ import annotations

import shutil

from benchmarks.harness import (
    Context,
    Section,
    Target,
    empty_repo,
    ensure_tool,
    interleave,
    run_pagent,
    run_timed,
    write_plan,
)

JOBS = 8
COMMAND = "/bin/true"


def run(ctx: Context) -> Section:
    tasks = 20 if ctx.quick else 1000
    section = Section("overhead", f"1. Per-task overhead: {tasks} no-op tasks, {JOBS} at a time")
    section.params = {"tasks": tasks, "jobs": JOBS, "command": COMMAND, "reps": ctx.reps}
    work = ctx.work / "overhead"
    work.mkdir()
    args = work / "args.txt"
    args.write_text("".join(f"{n}\n" for n in range(tasks)))
    parallel = ensure_tool("parallel", "parallel", ctx.install)
    xargs = shutil.which("xargs")
    scale = 1000 / tasks  # seconds per run -> ms per task
    rows = {"pagent-run": section.row("pagent-run", "ms/task", scale)}
    cpu = section.row("pagent-run: supervisor CPU", "ms/task", scale)
    variants = {}

    def pagent(rep: int) -> None:
        plan = write_plan(
            work / f"pagent-{rep}" / "plan.toml",
            tasks=tasks,
            command=[COMMAND],
            jobs=JOBS,
            repo=empty_repo(ctx),
        )
        timed = run_pagent(plan.parent, "run", plan, "--quiet")
        rows["pagent-run"].add(timed.wall)
        assert timed.cpu is not None
        cpu.add(timed.cpu)

    variants["pagent-run"] = pagent
    if parallel:
        rows["parallel"] = section.row(f"GNU parallel -j{JOBS}", "ms/task", scale)
        variants["parallel"] = lambda rep: rows["parallel"].add(
            run_timed([parallel, f"-j{JOBS}", "--will-cite", COMMAND], stdin=args, cwd=work).wall
        )
    else:
        section.notes.append("GNU parallel is not installed (and could not be): its comparison is skipped")
    if xargs:
        rows["xargs"] = section.row(f"xargs -P{JOBS} -n1", "ms/task", scale)
        variants["xargs"] = lambda rep: rows["xargs"].add(
            run_timed([xargs, f"-P{JOBS}", "-n1", COMMAND], stdin=args, cwd=work).wall
        )
    interleave(ctx.reps, variants)
    # Removed only now: on some filesystems (ext4 without a journal) creating files soon after
    # deleting many is slow, which would penalise the next round's logs and prompts.
    for rep in range(ctx.reps):
        shutil.rmtree(work / f"pagent-{rep}", ignore_errors=True)

    mine = rows["pagent-run"].median
    ratio = {name: mine / rows[name].median if name in rows else None for name in ("parallel", "xargs")}
    section.targets += [
        Target("pagent-run / GNU parallel (wall)", ratio["parallel"], 0.5),
        Target("pagent-run / xargs (wall)", ratio["xargs"], 2.0),
    ]
    return section
