"""The built-in offline ``demo`` agent: works like a tiny coding agent, without any network.

It reads the prompt from stdin, prints a few progress lines, writes ``notes/<task>.md`` about
the prompt in its working directory and commits it on the task's branch. Used by the
quickstart example and by anyone trying pagent-run without Claude Code installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    """Do the demo task; exit 0 on success, 1 if git refuses."""
    prompt = sys.stdin.read()
    task = os.environ.get("PAGENT_TASK_ID", "task")
    delay = float(os.environ.get("PAGENT_DEMO_DELAY", "0.2"))
    words = prompt.split()
    print(f"demo agent: task {task}, attempt {os.environ.get('PAGENT_ATTEMPT', '?')}", flush=True)
    print(f"reading the prompt: {len(words)} words", flush=True)
    time.sleep(delay)
    note = Path("notes") / f"{task}.md"
    note.parent.mkdir(exist_ok=True)
    note.write_text(
        f"# {task}\n\nThe prompt was:\n\n> {' '.join(words)}\n\n"
        f"It has {len(words)} words and {len(prompt)} characters.\n",
        encoding="utf-8",
    )
    print(f"wrote {note}", flush=True)
    time.sleep(delay)
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": os.environ.get("GIT_AUTHOR_NAME", "pagent demo"),
        "GIT_AUTHOR_EMAIL": os.environ.get("GIT_AUTHOR_EMAIL", "demo@pagent.invalid"),
        "GIT_COMMITTER_NAME": os.environ.get("GIT_COMMITTER_NAME", "pagent demo"),
        "GIT_COMMITTER_EMAIL": os.environ.get("GIT_COMMITTER_EMAIL", "demo@pagent.invalid"),
    }
    for argv in (["git", "add", str(note)], ["git", "commit", "--quiet", "-m", f"demo: notes for {task}"]):
        done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{' '.join(argv[:2])} failed: {done.stderr.strip()}", file=sys.stderr, flush=True)
            return 1
    print(f"committed {note}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
