"""Start a daemon the way careless tools do: double fork, a session (or group) of its own,
stdout kept open.

``spawn`` returns once the daemon has written its pid file (a handshake over a pipe). Run as a
script, this file *is* the daemon: it ignores SIGTERM and sleeps until SIGKILL, holding the
stdout and stderr it inherited from the agent.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` so that a reader never sees a half-written file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def spawn(pidfile: Path, *, keep_cookie: bool = True, new_session: bool = True) -> None:
    """Start the daemon; ``keep_cookie=False`` starts it without any PAGENT_* variable, and
    ``new_session=False`` only moves it to a process group of its own (as job control does)."""
    env = dict(os.environ)
    if not keep_cookie:
        env = {k: v for k, v in env.items() if not k.startswith("PAGENT_")}
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    child = os.fork()
    if child == 0:  # the intermediate process: new session or group, fork again, vanish
        try:
            os.close(read_end)
            if new_session:
                os.setsid()
            else:
                os.setpgid(0, 0)
            if os.fork() == 0:
                argv = [sys.executable, __file__, str(pidfile), str(write_end)]
                os.execve(sys.executable, argv, env)
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(child, 0)
    ready = os.read(read_end, 64)  # EOF without data means the daemon died first
    os.close(read_end)
    if not ready:
        raise RuntimeError("the daemon died before its handshake")


def main() -> None:
    """The daemon: ignore SIGTERM, say where it is, then wait forever."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    pidfile, ready_fd = Path(sys.argv[1]), int(sys.argv[2])
    write_atomic(pidfile, str(os.getpid()))
    os.write(ready_fd, b"ready")
    os.close(ready_fd)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
