"""A fake agent that edits its worktree as the prompt says, one action per line:

  write PATH N        write N numbered lines to PATH (creating directories)
  line PATH TEXT      write the single line TEXT to PATH
  commit MESSAGE      git add -A and commit
  exit CODE           exit with CODE now
  marker PATH         create the completion marker PATH
  fail-on-attempt N   on attempt N: print "boom on attempt N" to stderr and exit 3
Lines that are not actions (e.g. a shared context) are ignored.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

for raw in sys.stdin.read().splitlines():
    action, _, rest = raw.strip().partition(" ")
    if action == "write":
        path, count = rest.rsplit(" ", 1)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("".join(f"line {i}\n" for i in range(int(count))))
    elif action == "line":
        path, text = rest.split(" ", 1)
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    elif action == "commit":
        subprocess.run(["git", "add", "-A"], check=True)
        subprocess.run(["git", "commit", "-q", "--allow-empty", "-m", rest or "work"], check=True)
    elif action == "marker":
        Path(rest).touch()
    elif action == "exit":
        sys.exit(int(rest))
    elif action == "fail-on-attempt" and os.environ["PAGENT_ATTEMPT"] == rest:
        print(f"boom on attempt {rest}", file=sys.stderr)
        sys.exit(3)
print("editor done", flush=True)
