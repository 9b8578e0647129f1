"""The suite's one command: ``python -m benchmarks [--quick] [--reps N] [--only SECTION ...]``.

Runs the sections of issue 7 (overhead, worktrees, streaming, idle, scale) and of issue 19
(makespan, storm, parsing) in order, prints one
table and writes everything -- machine, parameters, every repetition, targets -- as JSON to
``benchmarks/results/<UTC time>.json`` and ``benchmarks/results/latest.json`` (git-ignored).
``--quick`` is a smoke run: tiny sizes, one repetition; its numbers mean nothing.
Exit status: 0 when every section ran (whether or not its targets were met), 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import idle, makespan, overhead, parsing, scale, storm, streaming, worktrees
from benchmarks.harness import Context, Section, machine

SECTIONS: dict[str, Callable[[Context], Section]] = {
    "overhead": overhead.run,
    "worktrees": worktrees.run,
    "streaming": streaming.run,
    "idle": idle.run,
    "scale": scale.run,
    "makespan": makespan.run,
    "storm": storm.run,
    "parsing": parsing.run,
}
DEFAULT_REPS = 5
RESULTS = Path(__file__).resolve().parent / "results"


def _number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3f}"


def render(sections: list[Section], info: dict[str, object]) -> str:
    """The table: per section, each variant's median and spread, then its targets."""
    lines = [
        f"pagent-run benchmarks -- {info['date']}, {info['nproc']} cores, {info['cpu_model']}, "
        f"Linux {info['kernel']}, Python {info['python']}",
    ]
    for section in sections:
        lines += ["", section.title]
        width = max([len(row.label) for row in section.rows] + [len(t.name) + 7 for t in section.targets])
        lines.append(f"  {'measurement':<{width}}  {'median':>9}  {'min':>9}  {'max':>9}  unit")
        for row in section.rows:
            values = [v * row.scale for v in row.stats.values]
            lines.append(
                f"  {row.label:<{width}}  {_number(row.stats.median * row.scale):>9}  "
                f"{_number(min(values, default=None)):>9}  {_number(max(values, default=None)):>9}  "
                f"{row.unit}"
            )
        for target in section.targets:
            verdict = {True: "met", False: "NOT MET", None: "skipped"}[target.met]
            comparison = "<=" if target.at_most else ">="
            lines.append(
                f"  target {target.name:<{width - 7}}  {_number(target.value):>9}  "
                f"{comparison} {_number(target.limit):<7}  {verdict}"
            )
        lines += [f"  note: {note}" for note in section.notes]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one repetition")
    parser.add_argument("--reps", type=int, help=f"repetitions per comparison (default {DEFAULT_REPS})")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), help="run only these sections")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON results")
    parser.add_argument(
        "--no-install", action="store_true", help="never apt-get install GNU parallel (skip it if missing)"
    )
    args = parser.parse_args(argv)
    reps = args.reps or (1 if args.quick else DEFAULT_REPS)
    info = machine()
    sections: list[Section] = []
    failed: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="pagent-bench-") as scratch:
        ctx = Context(quick=args.quick, reps=reps, work=Path(scratch), install=not args.no_install)
        for name in args.only or list(SECTIONS):
            print(f"== {name}", file=sys.stderr, flush=True)
            began = time.monotonic()
            try:
                sections.append(SECTIONS[name](ctx))
            except Exception:  # one broken section must not hide the others' numbers
                failed[name] = traceback.format_exc()
                print(failed[name], file=sys.stderr)
            print(f"   {name}: {time.monotonic() - began:.1f} s", file=sys.stderr, flush=True)
        # Reported before the scratch directory goes: removing it can take a while.
        table = render(sections, info)
        print(table, flush=True)
        result = {
            "machine": info,
            "quick": args.quick,
            "reps": reps,
            "sections": {section.key: section.to_dict() for section in sections},
            "failed": failed,
            "table": table,
        }
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        for path in (args.out / f"{stamp}{'-quick' if args.quick else ''}.json", args.out / "latest.json"):
            path.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"\nresults: {args.out / 'latest.json'}", file=sys.stderr)
    return 1 if failed else 0
