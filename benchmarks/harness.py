"""What every section shares: running commands and timing them, repetitions, plans, repos.

Every comparison is measured side by side: ``interleave`` runs repetition 1 of every variant,
then repetition 2 of every variant (each round in a rotated order), so a machine that gets
busier or quieter during the run shifts all variants alike. ``Stats`` keeps every value and
reports the median and the spread (min and max).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SHIM = HERE / "shim.py"
WRITER = HERE / "writer.py"
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "pagent bench",
    "GIT_AUTHOR_EMAIL": "bench@pagent.invalid",
    "GIT_COMMITTER_NAME": "pagent bench",
    "GIT_COMMITTER_EMAIL": "bench@pagent.invalid",
}


def say(text: str) -> None:
    """Progress for the person waiting, on stderr (the table goes to stdout)."""
    print(f"  .. {text}", file=sys.stderr, flush=True)


@dataclass
class Stats:
    """Repeated measurements of one quantity."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> None:
        self.values.append(value)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "median": self.median,
            "min": min(self.values, default=None),
            "max": max(self.values, default=None),
            "n": len(self.values),
            "values": self.values,
        }


@dataclass
class Row:
    """One line of the table: a variant's measurement of one quantity."""

    label: str
    unit: str
    stats: Stats
    scale: float = 1.0  # multiply the raw values by this for display (e.g. 1000 for ms)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "unit": self.unit, "scale": self.scale, **self.stats.to_dict()}


@dataclass
class Target:
    """A goal of the issue: ``value`` compared with ``limit``; ``met`` is None when skipped."""

    name: str
    value: float | None
    limit: float
    at_most: bool = True
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.value is None:
            return None
        return self.value <= self.limit if self.at_most else self.value >= self.limit

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "value": self.value,
            "limit": self.limit,
            "comparison": "<=" if self.at_most else ">=",
            "met": self.met,
            "note": self.note,
        }


@dataclass
class Section:
    """One numbered part of the suite and what it found."""

    key: str
    title: str
    rows: list[Row] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)

    def row(self, label: str, unit: str, scale: float = 1.0) -> Stats:
        stats = Stats()
        self.rows.append(Row(label, unit, stats, scale))
        return stats

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "params": self.params,
            "rows": [row.to_dict() for row in self.rows],
            "targets": [target.to_dict() for target in self.targets],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class Context:
    """How the suite was asked to run."""

    quick: bool
    reps: int
    work: Path  # a scratch directory, removed afterwards
    install: bool  # may the suite apt-get install what it compares against


def interleave(reps: int, variants: Mapping[str, Callable[[int], None]]) -> None:
    """Run every variant once per round, ``reps`` rounds, rotating the order each round."""
    names = list(variants)
    for rep in range(reps):
        shift = rep % len(names)
        for name in names[shift:] + names[:shift]:
            say(f"{name} (round {rep + 1}/{reps})")
            variants[name](rep)


@dataclass(frozen=True)
class Timed:
    """One command's wall time and, for the supervisor, its own CPU time and peak RSS."""

    wall: float
    returncode: int
    cpu: float | None = None  # user + system seconds of the supervisor process alone
    maxrss: int | None = None  # bytes
    stderr: str = ""


def run_timed(
    argv: Sequence[str | Path],
    *,
    cwd: Path | None = None,
    stdin: Path | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> Timed:
    """Run ``argv`` to its end, stdout discarded, and time it with a monotonic clock."""
    with open(stdin or os.devnull, "rb") as source:
        started = time.perf_counter()
        done = subprocess.run(
            [str(a) for a in argv],
            cwd=cwd,
            stdin=source,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=None if env is None else dict(env),
            check=False,
        )
        wall = time.perf_counter() - started
    stderr = done.stderr.decode("utf-8", "replace")
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, argv))} exited {done.returncode}: {stderr[-2000:]}")
    return Timed(wall, done.returncode, stderr=stderr)


def pagent_argv(usage: Path, *args: str | Path) -> list[str]:
    """argv that runs ``pagent ARGS`` through the shim, which writes its own usage to ``usage``."""
    return [sys.executable, str(SHIM), str(usage), *(str(a) for a in args)]


def read_usage(usage: Path) -> tuple[float, int]:
    """The supervisor's own CPU seconds and peak RSS (bytes), as the shim recorded them."""
    data = json.loads(usage.read_text())
    return float(data["user"] + data["sys"]), int(data["maxrss_bytes"])


def run_pagent(work: Path, *args: str | Path, check: bool = True) -> Timed:
    """Time ``pagent ARGS`` (e.g. ``run plan.toml -q``) as a user would start it."""
    usage = work / f"usage-{time.monotonic_ns()}.json"
    timed = run_timed(pagent_argv(usage, *args), cwd=work, check=check)
    cpu, maxrss = read_usage(usage)
    usage.unlink()
    return Timed(timed.wall, timed.returncode, cpu, maxrss, timed.stderr)


def write_plan(
    path: Path,
    *,
    tasks: int,
    command: Sequence[str],
    jobs: int,
    isolation: str = "none",
    waves: int = 1,
    extra_defaults: Sequence[str] = (),
    repo: Path | None = None,
) -> Path:
    """A plan of ``tasks`` tasks (spread over ``waves`` waves) that all run ``command``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        'name = "bench"',
        f"jobs = {jobs}",
        *([f"repo = {json.dumps(str(repo))}"] if repo is not None else []),
        "",
        "[defaults]",
        'agent = "bench"',
        f'isolation = "{isolation}"',
        'min_free_memory = "0"',
        "retries = 0",
        *extra_defaults,
        "",
        "[agents.bench]",
        f"command = {json.dumps(list(command))}",
    ]
    per_wave = -(-tasks // waves)
    for number in range(tasks):
        if number % per_wave == 0:
            lines += ["", "[[waves]]", f'name = "w{number // per_wave}"']
        lines += ["[[waves.tasks]]", f'id = "t{number:05d}"', f'prompt = "task {number}: do nothing"']
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def git(repo: Path, *args: str) -> str:
    """Run git in ``repo`` (with an identity for commits); raise if it fails."""
    done = subprocess.run(
        ["git", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **GIT_IDENTITY},
    )
    return done.stdout


def empty_repo(ctx: Context) -> Path:
    """A repository with one small commit, shared by plans whose tasks run outside worktrees."""
    path = ctx.work / "repo-for-isolation-none"
    return path if path.exists() else make_repo(path, 1)


def make_repo(path: Path, files: int) -> Path:
    """A git repository with one commit of ``files`` small files in 100-file directories."""
    path.mkdir(parents=True)
    git(path, "init", "--quiet", "--initial-branch=main")
    for number in range(files):
        folder = path / f"pkg{number // 100:03d}"
        folder.mkdir(exist_ok=True)
        (folder / f"module{number % 100:02d}.py").write_text(
            f'"""Module {number}."""\n\nVALUE = {number}\n\n\ndef f(x):\n    return x + VALUE\n'
        )
    git(path, "add", "--all")
    git(path, "commit", "--quiet", "-m", f"{files} files")
    return path


def ensure_tool(name: str, package: str, install: bool) -> str | None:
    """The path of ``name``; installs Debian's ``package`` when missing, allowed and root."""
    found = shutil.which(name)
    if found or not install:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return None
    say(f"installing {package} (apt-get)")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", package]):
        if subprocess.run(argv, env=env, capture_output=True, check=False).returncode != 0:
            return None
    return shutil.which(name)


def machine() -> dict[str, Any]:
    """What the numbers were measured on."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model or platform.processor(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
