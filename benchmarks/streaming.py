"""3. Log streaming: one agent writing as fast as it can, next to ``cat > file``.

Two agents (``writer.py``): one writes B bytes in 100-byte lines, one writes a single line of
L bytes. Each runs once under ``pagent-run`` (a ``plain`` agent: its output goes raw into the
attempt's log) and once piped into ``cat > file``. Throughput is measured by the writer itself:
bytes over the seconds from its first write to its last one returning, which is the pace its
reader sets. The supervisor's peak RSS is its own ``ru_maxrss``.
"""

from __future__ import annotations

import json
import shlex
import shutil
import sys
from pathlib import Path

from benchmarks.harness import (
    WRITER,
    Context,
    Section,
    Target,
    empty_repo,
    interleave,
    run_pagent,
    run_timed,
    write_plan,
)

MB = 1_000_000
RSS_LIMIT_MIB = 150


def _throughput(report: Path) -> float:
    """MB/s as the writer measured it (and the report removed)."""
    data = json.loads(report.read_text())
    report.unlink()
    return float(data["bytes"]) / MB / max(float(data["seconds"]), 1e-9)


def _case(ctx: Context, section: Section, size: int, line: int) -> None:
    label = f"{size // MB} MB in {line}-byte lines" if line else f"one {size // MB} MB line"
    mine = section.row(f"{label}: pagent-run", "MB/s")
    base = section.row(f"{label}: cat > file", "MB/s")
    rss = section.row(f"{label}: pagent-run peak RSS", "MiB", 1 / 2**20)
    work = ctx.work / "streaming"
    report = work / "report.json"
    writer = [sys.executable, str(WRITER), str(size), str(line), str(report)]

    def pagent(rep: int) -> None:
        plan = write_plan(work / "plan" / "plan.toml", tasks=1, command=writer, jobs=1, repo=empty_repo(ctx))
        timed = run_pagent(plan.parent, "run", plan, "--quiet")
        mine.add(_throughput(report))
        assert timed.maxrss is not None
        rss.add(timed.maxrss)
        shutil.rmtree(plan.parent)

    def cat(rep: int) -> None:
        run_timed(["sh", "-c", f"{shlex.join(writer)} | cat > {shlex.quote(str(work / 'cat.out'))}"])
        base.add(_throughput(report))
        (work / "cat.out").unlink()

    interleave(ctx.reps, {f"{label}: pagent-run": pagent, f"{label}: cat": cat})
    section.targets += [
        Target(f"{label}: peak RSS (MiB)", rss.median / 2**20, RSS_LIMIT_MIB),
        Target(f"{label}: throughput / cat's", mine.median / base.median, 0.5, at_most=False),
    ]


def run(ctx: Context) -> Section:
    cases = {
        "lines": (5 * MB if ctx.quick else 500 * MB, 100),
        "one line": (1 * MB if ctx.quick else 50 * MB, 0),
    }
    section = Section("streaming", "3. Log streaming: an agent writing to stdout as fast as it can")
    section.params = {name: {"bytes": size, "line_length": line} for name, (size, line) in cases.items()}
    section.params["reps"] = ctx.reps
    (ctx.work / "streaming").mkdir()
    for size, line in cases.values():
        _case(ctx, section, size, line)
    return section
