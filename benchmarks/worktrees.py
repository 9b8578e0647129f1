"""2. Worktree setup: N tasks on a generated repository, next to a shell loop of ``git worktree add``.

The repository has F small files in one commit. ``pagent-run`` runs N tasks whose agent does
nothing, each in its own new worktree and branch (so its wall time also holds the per-attempt
git checks: auto-commit status, diff stats); the baseline is ``git worktree add -b`` N times in
a shell loop. Every worktree (pagent's under ``repo.worktrees/``) lives in the scratch directory.
"""

from __future__ import annotations

import shutil

from benchmarks.harness import (
    Context,
    Section,
    Target,
    interleave,
    make_repo,
    run_pagent,
    run_timed,
    write_plan,
)

JOBS = 8
MAX_REPS = 3  # each round leaves 2 x 50 worktrees of 5,000 files until the section ends


def run(ctx: Context) -> Section:
    tasks, files = (3, 50) if ctx.quick else (50, 5000)
    section = Section("worktrees", f"2. Worktree setup: {tasks} tasks on a {files}-file repository")
    reps = min(ctx.reps, MAX_REPS)
    section.params = {"tasks": tasks, "files": files, "jobs": JOBS, "reps": reps}
    work = ctx.work / "worktrees"
    repo = make_repo(work / "repo", files)
    scale = 1000 / tasks
    mine = section.row("pagent-run (worktree + no-op agent + checks)", "ms/task", scale)
    loop = section.row("shell loop of git worktree add", "ms/task", scale)

    def pagent(rep: int) -> None:
        plan = write_plan(
            work / f"plans-{rep}" / "plan.toml",
            tasks=tasks,
            command=["/bin/true"],
            jobs=JOBS,
            isolation="worktree",
            repo=repo,
        )
        mine.add(run_pagent(plan.parent, "run", plan, "--quiet").wall)

    def shell(rep: int) -> None:
        add = f'git worktree add --quiet -b "loop{rep}/$i" "{work / f"loop-{rep}"}/$i" HEAD'
        loop.add(run_timed(["sh", "-c", f"for i in $(seq {tasks}); do {add} || exit 1; done"], cwd=repo).wall)

    # Nothing is removed between rounds: on some filesystems (ext4 without a journal) creating
    # files soon after deleting many is several times slower, which would distort every round
    # after the first. The next run of pagent-run then names its branches with its run id.
    interleave(reps, {"pagent-run": pagent, "git worktree add loop": shell})
    shutil.rmtree(work, ignore_errors=True)
    section.targets.append(
        Target("pagent-run / git worktree add loop (wall)", mine.median / loop.median, 1.1)
    )
    return section
