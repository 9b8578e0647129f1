"""A hostile agent for the node program: it leaves two processes behind that a process group
kill misses, and can then ignore SIGTERM itself.

Usage: ``hostile_tree.py PID_DIR MODE`` where MODE is ``exit:N`` (exit N once both are
running) or ``hang`` (ignore SIGTERM and sleep). It reads its prompt from stdin first, commits
nothing, and writes ``work.txt`` so there is something to auto-commit. The two leftovers:

- ``setsid.pid``: a double-forked daemon in a session of its own that ignores SIGTERM;
- ``orphan.pid``: a double-forked orphan in the agent's group (its parent exited at once).

Both keep the agent's stdout open and write their pid files atomically once running.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def leave_behind(pid_dir: Path, name: str, new_session: bool) -> None:
    """Double-fork a sleeper that writes ``PID_DIR/NAME.pid``; return once the first child is reaped."""
    child = os.fork()
    if child:
        os.waitpid(child, 0)
        return
    if new_session:
        os.setsid()
    if os.fork():
        os._exit(0)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    tmp = pid_dir / f"{name}.tmp"
    tmp.write_text(str(os.getpid()))
    tmp.replace(pid_dir / f"{name}.pid")
    while True:
        time.sleep(1)


def main() -> None:
    pid_dir, mode = Path(sys.argv[1]), sys.argv[2]
    sys.stdin.read()
    Path("work.txt").write_text("left uncommitted\n")
    leave_behind(pid_dir, "setsid", new_session=True)
    leave_behind(pid_dir, "orphan", new_session=False)
    deadline = time.monotonic() + 10
    while not all((pid_dir / f"{n}.pid").exists() for n in ("setsid", "orphan")):
        if time.monotonic() > deadline:
            sys.exit("leftovers did not start")
        time.sleep(0.01)
    print("hostile: ready", flush=True)
    if mode == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        while True:
            time.sleep(1)
    sys.exit(int(mode.split(":")[1]))


if __name__ == "__main__":
    main()
