"""4. Idle supervision: N agents sleeping for S seconds, all at once; the supervisor's CPU time.

``jobs = N`` and ``min_free_memory = "0"``, the default timeouts (so the watchdog samples every
attempt's tree every 5 s and stores a heartbeat). Two figures: the supervisor process's own CPU
over the whole run (start-up, N launches and the end included), and over the steady middle of
the sleep (read from ``/proc/PID/stat`` between 25 % and 90 % of S), which is what sampling
alone costs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from benchmarks.harness import Context, Section, Target, empty_repo, pagent_argv, read_usage, say, write_plan

LIMIT = 3.0  # percent of one core


def _cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` alone (not its children)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(ctx: Context) -> Section:
    agents, seconds = (10, 5) if ctx.quick else (100, 60)
    section = Section("idle", f"4. Idle supervision: {agents} agents sleeping {seconds} s")
    section.params = {"agents": agents, "seconds": seconds, "reps": 1}
    work = ctx.work / "idle"
    plan = write_plan(
        work / "plan.toml",
        tasks=agents,
        command=["/bin/sleep", str(seconds)],
        jobs=agents,
        repo=empty_repo(ctx),
    )
    whole = section.row("supervisor CPU, whole run", "% of a core")
    steady = section.row("supervisor CPU, steady state", "% of a core")
    usage = work / "usage.json"
    say(f"{agents} agents sleeping {seconds} s under pagent-run")
    started = time.perf_counter()
    proc = subprocess.Popen(
        pagent_argv(usage, "run", plan, "--quiet"),
        cwd=work,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(seconds * 0.25)
    t1, c1 = time.perf_counter(), _cpu_seconds(proc.pid)
    time.sleep(seconds * 0.65)
    t2, c2 = time.perf_counter(), _cpu_seconds(proc.pid)
    code = proc.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise RuntimeError(f"pagent-run exited {code}")
    cpu, _ = read_usage(usage)
    whole.add(100 * cpu / wall)
    steady.add(100 * (c2 - c1) / (t2 - t1))
    section.notes.append(f"whole run: {cpu:.2f} s of CPU in {wall:.1f} s")
    section.targets += [
        Target("supervisor CPU, whole run (% of a core)", whole.median, LIMIT),
        Target("supervisor CPU, steady state (% of a core)", steady.median, LIMIT),
    ]
    shutil.rmtree(work)
    return section
