"""One attempt on a node, after the fork: workspace, agent, stop of its tree, after-steps, result.

``Worker.run`` is the body of the node program (``ray_node``'s module docstring lists the steps);
it runs in a session of its own as a child subreaper, and reports through the records of
``node_spec``. Standard library only: this module runs on the nodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from supervisor.launch import node_git, node_proc
from supervisor.launch.node_spec import NodeSpec, record

EXIT_SETUP = 3
LOCK_WAIT = 30.0  # an earlier attempt's job may still be pushing after its stop
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def cache_root(spec: NodeSpec) -> Path:
    """Where workspaces live on this node: the spec's ``cache_dir``, ``$PAGENT_NODE_CACHE``, or
    ``$XDG_CACHE_HOME/pagent-node`` (``~/.cache/pagent-node``)."""
    if spec.cache_dir:
        return Path(spec.cache_dir)
    if os.environ.get("PAGENT_NODE_CACHE"):
        return Path(os.environ["PAGENT_NODE_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "pagent-node"


def say(text: str) -> None:
    """A line of the node program's own in the job log, on a line of its own."""
    write(f"\n[pagent] {text}\n".encode())


def write(data: bytes) -> None:
    """Write ``data`` to the job log (stdout) in one system call, whatever happens."""
    with contextlib.suppress(OSError):  # the log is gone: nothing left to tell
        os.write(1, data)


class Worker:
    """One attempt on this node, from the workspace to the result record."""

    def __init__(self, spec: NodeSpec, shim: int) -> None:
        self.spec = spec
        self.shim = shim
        self.stop_cause: str | None = None
        self.reaper = node_proc.Reaper()
        self.result: dict[str, Any] = {
            "version": 1,
            "task_id": spec.task_id,
            "run_id": spec.run_id,
            "attempt": spec.attempt,
            "node": socket.gethostname(),
            "pin_ref": spec.pin_ref,
            "exit_code": None,
            "signal": None,
            "stopped": None,
            "marker": None,
            "auto_committed": False,
            "verify_exit": None,
            "leftovers": 0,
            "error": None,
            "phase": None,
        }
        self.seconds: dict[str, float] = {}  # how long setup, agent and after-steps took
        self.result["seconds"] = self.seconds
        self._wake_r, self._wake_w = os.pipe()

    # -- signals -------------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: object) -> None:
        if self.stop_cause is None:
            self.stop_cause = "parent-died" if os.getppid() != self.shim else signal.Signals(signum).name

    def _install_signals(self) -> None:
        os.set_blocking(self._wake_w, False)
        signal.set_wakeup_fd(self._wake_w)
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._on_signal)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # only to wake the loop through the fd

    def _stopping(self) -> bool:
        if self.stop_cause is None and os.getppid() != self.shim:
            self.stop_cause = "parent-died"
        return self.stop_cause is not None

    def _sleep(self, seconds: float) -> None:
        """Wait up to ``seconds``, less when a signal arrives."""
        ready, _, _ = select.select([self._wake_r], [], [], max(seconds, 0))
        if ready:
            os.read(self._wake_r, 4096)

    # -- the attempt ---------------------------------------------------------------------
    def run(self) -> int:
        """Everything in the module docstring after the fork; returns the exit code."""
        os.setsid()
        node_proc.become_subreaper()
        self._install_signals()
        # Ray blocks SIGINT in its processes; the agent should not inherit that.
        signal.pthread_sigmask(signal.SIG_SETMASK, ())
        if not node_proc.die_with_parent(signal.SIGTERM, self.shim):
            self.stop_cause = "parent-died"
        started = time.monotonic()
        start = {"node": self.result["node"], "pid": os.getpid(), "t": round(time.time(), 3)}
        write(record("START", self.spec.nonce, start))
        task_dir = cache_root(self.spec) / self.spec.plan_uid / self.spec.task_id
        repo = task_dir / "repo"
        self.result["workspace"] = str(repo)
        if self.spec.not_after is not None and time.time() > self.spec.not_after:
            # Ray runs a job it could not start in time even after stop_job: refuse late starts.
            return self._finish(EXIT_SETUP, "setup", "started after not_after: the supervisor gave up on it")
        try:
            task_dir.mkdir(parents=True, exist_ok=True)
            lock = self._lock(task_dir / "lock")
        except OSError as error:
            return self._finish(EXIT_SETUP, "setup", f"workspace: {error}")
        if lock is None:
            return self._finish(EXIT_SETUP, "setup", f"workspace {repo} is busy (another attempt holds it)")
        try:
            checkout = node_git.prepare(
                repo,
                self.spec.remote,
                branch=self.spec.branch,
                start_commit=self.spec.start_commit,
                start_ref=self.spec.start_ref,
                timeout=self.spec.git_timeout,
            )
        except (node_git.NodeGitError, OSError) as error:
            return self._finish(EXIT_SETUP, "setup", str(error))
        self.result.update(continued=checkout.continued, tip_before=checkout.tip)
        self.seconds["setup"] = round(time.monotonic() - started, 3)
        marker = repo / self.spec.done_marker if self.spec.done_marker else None
        if marker is not None:
            marker.unlink(missing_ok=True)
        if self._stopping():  # stopped before the agent ran: nothing to save, nothing to push
            return self._finish(
                128 + signal.SIGTERM, "setup", f"stopped before the agent started ({self.stop_cause})"
            )
        status = self._run_agent(repo, task_dir)
        if status is not None and os.WIFSIGNALED(status):
            self.result["signal"] = os.WTERMSIG(status)
        elif status is not None:
            self.result["exit_code"] = os.waitstatus_to_exitcode(status)
        self.result["stopped"] = self.stop_cause
        code = self._exit_code(status)
        after = time.monotonic()
        self._after(repo, marker, checkout, code)
        self.seconds["after"] = round(time.monotonic() - after, 3)
        return self._finish(code if code is not None else 128 + signal.SIGTERM)

    def _lock(self, path: Path) -> int | None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + LOCK_WAIT
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline or self._stopping():
                    os.close(fd)
                    return None
                self._sleep(0.2)
            else:
                return fd  # held until this process exits

    def _env(self, repo: Path, prompt: Path) -> dict[str, str]:
        spec = self.spec
        return {
            **os.environ,
            **spec.env,
            "PAGENT_RUN_ID": spec.run_id,
            "PAGENT_TASK_ID": spec.task_id,
            "PAGENT_WAVE": spec.wave,
            "PAGENT_ATTEMPT": str(spec.attempt),
            "PAGENT_WORKTREE": str(repo),
            "PAGENT_PROMPT_FILE": str(prompt),
            "PAGENT_COOKIE": spec.cookie,
        }

    def _spawn(self, argv: tuple[str, ...], cwd: Path, stdin: Path, env: dict[str, str]) -> int | None:
        """Start ``argv`` writing to our stdout; its pid, or ``None`` (reported) if it cannot start."""
        try:
            with open(stdin, "rb") as source:
                proc = subprocess.Popen(
                    argv, cwd=cwd, stdin=source, stderr=subprocess.STDOUT, env=env, process_group=0
                )
        except OSError as error:
            say(f"cannot start {argv[0]!r}: {error.strerror or error}")
            return None
        # This process reaps every child itself (it is a subreaper); the Popen object must not.
        proc.returncode = 0
        self.reaper.watch(proc.pid)
        return proc.pid

    def _run_agent(self, repo: Path, task_dir: Path) -> int | None:
        """Run the agent to its end (or to a stop), then stop whatever it left; its wait status."""
        spec = self.spec
        prompt = task_dir / "prompts" / f"{spec.run_id}.{spec.attempt}.txt"
        prompt.parent.mkdir(exist_ok=True)
        prompt.write_text(spec.prompt)
        cwd = repo / spec.workdir if spec.workdir else repo
        started = time.monotonic()
        pid = self._spawn(spec.argv, cwd, prompt, self._env(repo, prompt))
        if pid is None:
            self._fail("launch", f"cannot start {spec.argv[0]!r}")
            return 127 << 8
        next_sample = time.monotonic() + spec.sample_interval
        while self.reaper.status(pid) is None and not self._stopping():
            now = time.monotonic()
            if spec.sample_interval > 0 and now >= next_sample:
                write(record("SAMPLE", spec.nonce, node_proc.tree_sample(os.getpid())))
                next_sample = now + spec.sample_interval
            wait = next_sample - now if spec.sample_interval > 0 else 1.0
            self._sleep(min(wait, 1.0))
            self.reaper.reap()
        self.seconds["agent"] = round(time.monotonic() - started, 3)
        signalled = node_proc.stop_descendants(os.getpid(), self.reaper, spec.kill_grace)
        self.result["leftovers"] = len(signalled - {pid})
        return self.reaper.status(pid)

    @staticmethod
    def _exit_code(status: int | None) -> int | None:
        if status is None:
            return None
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code

    def _reason(self, code: int | None) -> str:
        """The reason in the auto-commit's message, as the local executor words it."""
        if self.stop_cause is not None:
            return "stopped"
        if code == 0:
            return "ok"
        if code is not None and code > 128:
            return f"signal {signal.Signals(code - 128).name}"
        return f"exit {code}"

    def _fail(self, phase: str, error: str) -> None:
        """Record the attempt's first error and the phase it happened in."""
        if self.result["error"] is None:
            self.result.update(error=error, phase=phase)

    def _after(self, repo: Path, marker: Path | None, checkout: node_git.Checkout, code: int | None) -> None:
        """Marker, auto-commit, verify, push: what needs the files, within the stop budget."""
        spec = self.spec
        deadline = time.monotonic() + spec.stop_budget
        try:
            if marker is not None:
                self.result["marker"] = marker.exists()
                marker.unlink(missing_ok=True)
            exclude = [spec.done_marker] if spec.done_marker else []
            if spec.auto_commit and node_git.head(repo) is not None:
                message = f"pagent: work left uncommitted by {spec.task_id}, attempt {spec.attempt} "
                message += f"({self._reason(code)})"
                self.result["auto_committed"] = node_git.auto_commit(repo, message, exclude)
            if spec.verify and code == 0 and not self._stopping() and self.result["marker"] is not False:
                self.result["verify_exit"] = self._verify(repo)
        except (node_git.NodeGitError, OSError) as error:
            self._fail("after", str(error))
        head = node_git.head(repo)
        branch_head = node_git.branch_commit(repo, spec.branch)
        on_branch = head is not None and head == branch_head
        self.result.update(head=head, branch_head=branch_head, on_branch=on_branch)
        if branch_head is not None:
            self.result["rewritten"] = not node_git.is_ancestor(repo, checkout.tip, branch_head)
        timeout = spec.git_timeout
        if self._stopping():
            timeout = max(1.0, min(timeout, deadline - time.monotonic()))
        try:
            pushed = node_git.push(
                repo,
                spec.remote,
                branch=spec.branch,
                branch_commit=branch_head,
                pin_ref=spec.pin_ref,
                pin_commit=head,
                expected=checkout.remote_tip,
                force=spec.force_push,
                timeout=timeout,
            )
        except node_git.NodeGitError as error:
            self.result.update(pushed_branch=False, pushed_pin=False, forced=False)
            self._fail("push", str(error))
            return
        self.result.update(pushed_branch=pushed.branch, pushed_pin=pushed.pin, forced=pushed.forced)
        if pushed.error:
            self._fail("push", pushed.error)

    def _verify(self, repo: Path) -> int | None:
        """Run ``verify`` in the agent's directory, bounded; its exit code (124: timed out,
        127: cannot start, ``None``: stopped by a stop of the attempt)."""
        spec = self.spec
        say(f"verify: {' '.join(spec.verify)}")
        cwd = repo / spec.workdir if spec.workdir else repo
        pid = self._spawn(spec.verify, cwd, Path(os.devnull), self._env(repo, Path(os.devnull)))
        if pid is None:
            return 127
        deadline = time.monotonic() + spec.verify_timeout
        while self.reaper.status(pid) is None and not self._stopping() and time.monotonic() < deadline:
            self._sleep(min(1.0, deadline - time.monotonic()))
            self.reaper.reap()
        status = self.reaper.status(pid)
        timed_out = status is None and not self._stopping()
        node_proc.stop_descendants(os.getpid(), self.reaper, spec.kill_grace)
        if timed_out:
            say(f"verify: timed out after {spec.verify_timeout:g} s")
            return 124
        return None if status is None else self._exit_code(status)

    def crashed(self, error: BaseException) -> None:
        """After an unexpected exception: stop everything below, print the result saying so."""
        with contextlib.suppress(Exception):
            node_proc.stop_descendants(os.getpid(), self.reaper, self.spec.kill_grace)
        self.result.update(error=f"node program failed: {error!r}", phase="node", stopped=self.stop_cause)
        say(self.result["error"])
        write(record("RESULT", self.spec.nonce, self.result))

    def _finish(self, code: int, phase: str | None = None, error: str | None = None) -> int:
        """Stop whatever git or verify left behind, then print the result record."""
        node_proc.stop_descendants(os.getpid(), self.reaper, 1.0)
        if error is not None and phase is not None:
            self._fail(phase, error)
            self.result["stopped"] = self.stop_cause
        if self.result["error"] is not None:
            say(f"{self.result['phase']}: {self.result['error']}")
        write(record("RESULT", self.spec.nonce, self.result))
        return code
