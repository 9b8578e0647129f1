"""8. Stream-json parsing: the supervisor's CPU per MB of a Claude agent's output.

One agent (``replay.py``) replays the recorded transcript ``tests/transcripts/success-write-tool``
(events of 500-660 bytes: tool calls and their results) to B bytes as fast as it can, once as a
``kind = "claude"`` agent (every line parsed as a stream-json event, the live status followed)
and once as ``kind = "plain"`` (the same bytes only logged), side by side. The supervisor's own
CPU time (the shim's ``getrusage``) of the two runs differs by what parsing costs: B over that
difference is the parsing throughput per core. Target: at least 50 MB/s per core, so that
parsing never becomes the bottleneck -- 50 chatty agents printing 100 KB/s each would take a
tenth of one core.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import tomli_w

from benchmarks.harness import HERE, Context, Section, Target, empty_repo, interleave, run_pagent

MB = 1_000_000
TARGET_MB_S = 50.0
TRANSCRIPT = HERE.parent / "tests" / "transcripts" / "success-write-tool.jsonl"
AGENT = HERE / "replay.py"


def _plan(path: Path, size: int, kind: str, repo: Path) -> Path:
    path.parent.mkdir(parents=True)
    agent: dict[str, object] = {
        "command": [sys.executable, str(AGENT), str(TRANSCRIPT), str(size)],
        "kind": kind,
    }
    if kind == "claude":
        agent["preflight"] = False
    table = {
        "name": "parsing",
        "jobs": 1,
        "repo": str(repo),
        "defaults": {"agent": "replay", "isolation": "none", "min_free_memory": "0", "retries": 0},
        "agents": {"replay": agent},
        "waves": [{"name": "w", "tasks": [{"id": "chatty", "prompt": "talk"}]}],
    }
    path.write_text(tomli_w.dumps(table), encoding="utf-8")
    return path


def run(ctx: Context) -> Section:
    size = 2 * MB if ctx.quick else 200 * MB
    section = Section("parsing", f"8. Stream-json parsing: {size // MB} MB of Claude events from one agent")
    section.params = {"bytes": size, "transcript": TRANSCRIPT.name, "reps": ctx.reps}
    work = ctx.work / "parsing"
    work.mkdir()
    cpu = {kind: section.row(f"kind = {kind!r}: supervisor CPU", "s") for kind in ("claude", "plain")}
    wall = {kind: section.row(f"kind = {kind!r}: wall", "s") for kind in ("claude", "plain")}
    parsing = section.row("parsing alone (claude CPU - plain CPU)", "MB/s per core")

    def variant(kind: str) -> Callable[[int], None]:
        def one(rep: int) -> None:
            plan = _plan(work / f"{kind}-{rep}" / "plan.toml", size, kind, empty_repo(ctx))
            timed = run_pagent(plan.parent, "run", plan, "--quiet")
            assert timed.cpu is not None
            cpu[kind].add(timed.cpu)
            wall[kind].add(timed.wall)
            shutil.rmtree(plan.parent)

        return one

    interleave(ctx.reps, {"claude": variant("claude"), "plain": variant("plain")})
    for claude, plain in zip(cpu["claude"].values, cpu["plain"].values, strict=True):  # round by round
        parsing.add(size / MB / (claude - plain) if claude > plain else float("inf"))
    section.targets.append(
        Target("parsing throughput (MB/s per core)", parsing.median, TARGET_MB_S, at_most=False)
    )
    overall = size / MB / cpu["claude"].median
    section.notes.append(
        f"the whole supervisor on claude output (start-up and log included): {overall:.0f} MB/s per core"
    )
    return section
