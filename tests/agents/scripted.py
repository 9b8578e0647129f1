"""A fake coding agent whose behaviour the prompt scripts, for end-to-end tests.

Prompt lines it understands (others are ignored):
  fail-until N        exit 1 (after writing to stdout and stderr) while PAGENT_ATTEMPT < N
  fail-unless FILE    exit 1 unless FILE (relative to the plan directory) exists
  wait-for-peers N    before working, wait (10 s at most) until N tasks have started
It appends {"event", "task", "attempt", "t"} lines to $JOURNAL, writes result/<task>.txt in its
working directory and commits it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

task = os.environ["PAGENT_TASK_ID"]
attempt = int(os.environ["PAGENT_ATTEMPT"])
journal = Path(os.environ["JOURNAL"])
plan_dir = Path(os.environ["PLAN_DIR"])


def note(event: str) -> None:
    with journal.open("a") as f:
        f.write(json.dumps({"event": event, "task": task, "attempt": attempt, "t": time.time()}) + "\n")


def started_tasks() -> set[str]:
    lines = journal.read_text().splitlines() if journal.exists() else []
    return {json.loads(line)["task"] for line in lines if json.loads(line)["event"] == "start"}


script = dict(line.split(" ", 1) for line in sys.stdin.read().splitlines() if " " in line)
note("start")
print(f"agent {task} attempt {attempt} on stdout", flush=True)
print(f"agent {task} attempt {attempt} on stderr", file=sys.stderr, flush=True)

if "wait-for-peers" in script:
    deadline = time.monotonic() + 10
    while len(started_tasks()) < int(script["wait-for-peers"]) and time.monotonic() < deadline:
        time.sleep(0.02)

if "fail-until" in script and attempt < int(script["fail-until"]):
    note("end")
    print("failing on purpose", file=sys.stderr)
    sys.exit(1)
if "fail-unless" in script and not (plan_dir / script["fail-unless"]).exists():
    note("end")
    print(f"missing {script['fail-unless']}", file=sys.stderr)
    sys.exit(1)

out = Path("result") / f"{task}.txt"
out.parent.mkdir(exist_ok=True)
out.write_text(f"{task} done on attempt {attempt}\n")
subprocess.run(["git", "add", str(out)], check=True)
subprocess.run(["git", "commit", "--quiet", "-m", f"{task}: result"], check=True)
note("end")
