"""One program of an attempt on a node (the agent, verify, a scratch command): its environment,
its files, its start, its output, the wait for its end.

The program's stdout is the job log itself (the node program's own stdout: Ray's log file), so
its bytes reach the supervisor unchanged; its stderr goes through a pipe that ``Program.pump``
turns into ERR records (``node_spec``), so that the supervisor can hand stdout and stderr to the
agent kind apart, as the local executor does. Its environment is the node's, the spec's overlay
over it, ``PAGENT_*`` and ``PWD``; ``{attempt_dir}`` and ``{agent_home}`` in values become the
attempt's own directory (made 0700 with the spec's ``files`` in it, removed at the end) and the
agent's kept directory under the node cache.

Standard library only: this module runs on the nodes.
"""

from __future__ import annotations

import base64
import contextlib
import os
import select
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from supervisor.launch import node_proc
from supervisor.launch.node_spec import NodeSpec, record

ATTEMPT_DIR = "{attempt_dir}"  # as supervisor.seam names them
AGENT_HOME = "{agent_home}"
_READ = 64 * 1024


def write(data: bytes) -> None:
    """Write ``data`` to the job log (stdout) in one system call, whatever happens."""
    with contextlib.suppress(OSError):  # the log is gone: nothing left to tell
        os.write(1, data)


def say(text: str) -> None:
    """A line of the node program's own in the job log, on a line of its own."""
    write(f"\n[pagent] {text}\n".encode())


@contextlib.contextmanager
def attempt_dir(spec: NodeSpec) -> Iterator[Path | None]:
    """The attempt's own directory with the spec's files in it, while the attempt runs; ``None``
    when the spec neither has files nor names the directory."""
    if not spec.files and not any(ATTEMPT_DIR in value for value in spec.env.values()):
        yield None
        return
    made = Path(tempfile.mkdtemp(prefix="pagent-attempt-"))  # 0700
    try:
        for name, content in spec.files.items():
            path = made / name
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            path.touch(mode=0o600)
            path.write_bytes(base64.b64decode(content))
        yield made
    finally:
        shutil.rmtree(made, ignore_errors=True)


def environment(
    spec: NodeSpec, cwd: Path, *, workspace: Path | None, prompt: Path, own: Path | None, cache: Path
) -> dict[str, str]:
    """The program's environment (see the module docstring)."""
    home = None
    if spec.home is not None and any(AGENT_HOME in value for value in spec.env.values()):
        home = cache / "homes" / spec.home
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
    env = {**os.environ, "PWD": str(cwd)}
    for name, given in spec.env.items():
        value = given if own is None else given.replace(ATTEMPT_DIR, str(own))
        env[name] = value if home is None else value.replace(AGENT_HOME, str(home))
    env.update(
        {
            "PAGENT_RUN_ID": spec.run_id,
            "PAGENT_TASK_ID": spec.task_id,
            "PAGENT_WAVE": spec.wave,
            "PAGENT_ATTEMPT": str(spec.attempt),
            "PAGENT_PROMPT_FILE": str(prompt),
            "PAGENT_COOKIE": spec.cookie,
        }
    )
    if workspace is not None:
        env["PAGENT_WORKTREE"] = str(workspace)
    return env


class Program:
    """One started program: its pid and the read end of its stderr pipe."""

    def __init__(self, pid: int, err: int, nonce: str) -> None:
        self.pid = pid
        self._err: int | None = err
        self._nonce = nonce

    @property
    def fds(self) -> list[int]:
        """What to wait on for its output."""
        return [self._err] if self._err is not None else []

    def pump(self) -> None:
        """Pass on what its stderr holds now, as ERR records; close the pipe at EOF."""
        while self._err is not None:
            try:
                data = os.read(self._err, _READ)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                os.close(self._err)
                self._err = None
                return
            write(record("ERR", self._nonce, {"b": base64.b64encode(data).decode()}))

    def close(self) -> None:
        """After its tree is gone: whatever is left in the pipe, then EOF."""
        self.pump()


def spawn(
    argv: tuple[str, ...],
    cwd: Path,
    stdin: Path,
    env: dict[str, str],
    *,
    reaper: node_proc.Reaper,
    nonce: str,
) -> Program | None:
    """Start ``argv`` writing its stdout to our stdout and its stderr to a pipe of ours, in a
    process group of its own; ``None`` (said in the log) if it cannot start."""
    err_read, err_write = os.pipe()
    try:
        with open(stdin, "rb") as source:
            proc = subprocess.Popen(argv, cwd=cwd, stdin=source, stderr=err_write, env=env, process_group=0)
    except OSError as error:
        os.close(err_read)
        say(f"cannot start {argv[0]!r}: {error.strerror or error}")
        return None
    finally:
        os.close(err_write)
    # This process reaps every child itself (it is a subreaper); the Popen object must not.
    proc.returncode = 0
    reaper.watch(proc.pid)
    os.set_blocking(err_read, False)
    return Program(proc.pid, err_read, nonce)


def wait(
    program: Program,
    reaper: node_proc.Reaper,
    wake: int,
    stopping: Callable[[], bool],
    *,
    deadline: float | None = None,
    sample_every: float = 0.0,
    now: Callable[[], float],
) -> None:
    """Until ``program`` has ended, a stop is asked for or ``deadline`` (on ``now``'s clock)
    passes: pass its stderr on, reap, and write a SAMPLE every ``sample_every`` seconds (one at
    once: the supervisor learns that the program runs)."""
    nonce = program._nonce
    next_sample = now() if sample_every > 0 else None
    while reaper.status(program.pid) is None and not stopping():
        current = now()
        if deadline is not None and current >= deadline:
            return
        if next_sample is not None and current >= next_sample:
            write(record("SAMPLE", nonce, node_proc.tree_sample(os.getpid())))
            next_sample = current + sample_every
        timeout = 1.0 if next_sample is None else max(0.0, min(1.0, next_sample - current))
        if deadline is not None:
            timeout = max(0.0, min(timeout, deadline - current))
        ready, _, _ = select.select([wake, *program.fds], [], [], timeout)
        if wake in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake, 4096)
        program.pump()
        reaper.reap()
