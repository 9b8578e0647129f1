"""An agent for the supervisor-signal tests: exits 0 at once if DIR/go exists, else works forever.

argv: DIR [--ignore-term] [--leftover]. Every start appends "start TASK ATTEMPT PID" to
DIR/runs.log (and "done TASK ATTEMPT" on success), so tests count how often each task ran. It
holds an exclusive lock on DIR/TASK.lock while it lives: an agent of the same task finding it
taken appends "overlap" and exits 3. Once working it writes DIR/TASK.ATTEMPT.pid (the handshake)
and waits for a signal; creating DIR/go later does not end it, only a new attempt sees it.
``--ignore-term`` ignores SIGTERM (so the parent-death signal does not end it); ``--leftover``
first starts a daemon (see ``_daemon``) that ignores SIGTERM, its pid in DIR/TASK.leftover.pid.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import sys
import time
from pathlib import Path

from _daemon import spawn, write_atomic

parser = argparse.ArgumentParser()
parser.add_argument("dir", type=Path)
parser.add_argument("--ignore-term", action="store_true")
parser.add_argument("--leftover", action="store_true")
args = parser.parse_args()
task, attempt = os.environ["PAGENT_TASK_ID"], os.environ["PAGENT_ATTEMPT"]
go = args.dir / "go"


def note(line: str) -> None:
    with open(args.dir / "runs.log", "a") as log:
        log.write(line + "\n")


sys.stdin.read()
if args.ignore_term:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
note(f"start {task} {attempt} {os.getpid()}")
lock = open(args.dir / f"{task}.lock", "w")  # noqa: SIM115 - held until this process ends
try:
    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
except BlockingIOError:
    note(f"overlap {task} {attempt}")
    sys.exit(3)
if go.exists():
    note(f"done {task} {attempt}")
    print(f"{task}: done", flush=True)
    sys.exit(0)
if args.leftover:
    spawn(args.dir / f"{task}.leftover.pid")
write_atomic(args.dir / f"{task}.{attempt}.pid", str(os.getpid()))
print(f"{task}: working", flush=True)
while True:
    time.sleep(3600)
