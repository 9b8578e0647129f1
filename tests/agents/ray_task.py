"""An agent for the Ray executor's tests; its prompt says what to do, one action per line.

  commit PATH TEXT          write TEXT and a newline to PATH, git add, commit (if it changed)
  write PATH TEXT           write TEXT and a newline to PATH (left uncommitted)
  expect PATH               exit 9 unless PATH exists (what an earlier attempt left)
  fail-on-attempt N         exit 1 here on attempt N
  work-until PATH           print "working" every 0.2 s until PATH exists (60 s at most)
  stall-on-attempt N        on attempt N: leave a daemon (double fork, own session, empty
                            environment, SIGTERM ignored; its pid in $RAY_TEST_DIR/<task>.daemon),
                            then sleep in silence for ever
  lock                      hold $RAY_TEST_DIR/<task>.lock while alive; if another attempt of
                            the task holds it, print "overlap" and exit 3
  print TEXT                print TEXT

Every start writes its pid to $RAY_TEST_DIR/<task>.<attempt>.pid; "agent done" ends a success.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import time
from pathlib import Path

from _daemon import spawn, write_atomic

task, attempt = os.environ["PAGENT_TASK_ID"], int(os.environ["PAGENT_ATTEMPT"])
where = Path(os.environ["RAY_TEST_DIR"])
prompt = sys.stdin.read()
lines = [line.split(" ", 2) for line in prompt.splitlines() if line.strip()]
write_atomic(where / f"{task}.{attempt}.pid", str(os.getpid()))
print(f"agent {task} attempt {attempt} in {Path.cwd()}", flush=True)
print(f"agent {task} attempt {attempt} on stderr", file=sys.stderr, flush=True)
print(f"prompt of {len(prompt.encode())} bytes", flush=True)
for action, *args in lines:
    if action in ("commit", "write"):
        path = Path(args[0])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(args[1] + "\n")
        if action == "commit":
            subprocess.run(["git", "add", str(path)], check=True)
            if subprocess.run(["git", "diff", "--cached", "--quiet"], check=False).returncode:
                subprocess.run(["git", "commit", "--quiet", "-m", f"{task}: {args[0]}"], check=True)
    elif action == "expect" and not Path(args[0]).exists():
        print(f"missing {args[0]}", flush=True)
        sys.exit(9)
    elif action == "expect":
        print(f"found {args[0]}", flush=True)
    elif action == "fail-on-attempt" and attempt == int(args[0]):
        print("failing on purpose", file=sys.stderr, flush=True)
        sys.exit(1)
    elif action == "work-until":
        deadline = time.monotonic() + 60
        while not Path(args[0]).exists() and time.monotonic() < deadline:
            print("working", flush=True)
            time.sleep(0.2)
    elif action == "stall-on-attempt" and attempt == int(args[0]):
        spawn(where / f"{task}.daemon", keep_cookie=False)
        print("stalling", flush=True)
        while True:
            time.sleep(3600)
    elif action == "lock":
        held = open(where / f"{task}.lock", "w")  # noqa: SIM115 - held until this process ends
        try:
            fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print("overlap", flush=True)
            sys.exit(3)
    elif action == "print":
        print(" ".join(args), flush=True)
print("agent done", flush=True)
