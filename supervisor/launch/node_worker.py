"""One attempt on a node, after the fork: workspace, program, stop of its tree, after-steps, result.

``Worker.run`` is the body of the node program (``ray_node``'s module docstring lists the steps);
it runs in a session of its own as a child subreaper, and reports through the records of
``node_spec``. What it runs depends on the spec's ``mode``: an ``attempt`` (the task's cached
workspace, the agent, marker, auto-commit, the push of branch and pins), a ``verify`` (the
task's verify command in the workspace an attempt left here) or a ``scratch`` command (its own
empty directory, no git). Standard library only: this module runs on the nodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import select
import shutil
import signal
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

from supervisor.launch import node_after, node_agent, node_git, node_proc
from supervisor.launch.node_agent import say, write
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


class Worker:
    """One attempt on this node, from the workspace to the result record."""

    def __init__(self, spec: NodeSpec, shim: int) -> None:
        self.spec = spec
        self.shim = shim
        self.stop_cause: str | None = None
        self.reaper = node_proc.Reaper()
        self.result: dict[str, Any] = {
            "version": 1,
            "mode": spec.mode,
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
            "dirty": False,
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
        os.set_blocking(self._wake_r, False)
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
            with contextlib.suppress(BlockingIOError):
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
        start = {"node": self.result["node"], "pid": os.getpid(), "t": round(time.time(), 3)}
        write(record("START", self.spec.nonce, start))
        if self.spec.not_after is not None and time.time() > self.spec.not_after:
            # Ray runs a job it could not start in time even after stop_job: refuse late starts.
            return self._finish(EXIT_SETUP, "setup", "started after not_after: the supervisor gave up on it")
        if self.spec.mode == "scratch":
            return self._scratch()
        task_dir = cache_root(self.spec) / self.spec.plan_uid / self.spec.task_id
        repo = task_dir / "repo"
        self.result["workspace"] = str(repo)
        try:
            task_dir.mkdir(parents=True, exist_ok=True)
            lock = self._lock(task_dir / "lock")
        except OSError as error:
            return self._finish(EXIT_SETUP, "setup", f"workspace: {error}")
        if lock is None:
            return self._finish(EXIT_SETUP, "setup", f"workspace {repo} is busy (another attempt holds it)")
        if self.spec.mode == "verify":
            return self._verify_mode(repo, task_dir)
        return self._attempt(repo, task_dir)

    def _attempt(self, repo: Path, task_dir: Path) -> int:
        """The attempt mode: workspace, agent, after-steps (marker, auto-commit, push)."""
        started = time.monotonic()
        spec = self.spec
        try:
            checkout = node_git.prepare(
                repo,
                spec.remote,
                branch=spec.branch,
                start_commit=spec.start_commit,
                start_ref=spec.start_ref,
                timeout=spec.git_timeout,
                expect_remote=spec.expect_remote,
            )
        except (node_git.NodeGitError, OSError) as error:
            return self._finish(EXIT_SETUP, "setup", str(error))
        self.result.update(continued=checkout.continued, tip_before=checkout.tip)
        self.seconds["setup"] = round(time.monotonic() - started, 3)
        if spec.done_marker:
            (repo / spec.done_marker).unlink(missing_ok=True)
        if self._stopping():  # stopped before the agent ran: nothing to save, nothing to push
            return self._finish(
                128 + signal.SIGTERM, "setup", f"stopped before the agent started ({self.stop_cause})"
            )
        prompt = task_dir / "prompts" / f"{spec.run_id}.{spec.attempt}.txt"
        code = self._program(
            spec.argv, repo, repo, prompt, cache_root(spec), sample_every=spec.sample_interval
        )
        after = time.monotonic()
        node_after.after_attempt(
            spec,
            repo,
            checkout,
            reason=self._reason(code),
            result=self.result,
            stopping=self._stopping,
            fail=self._fail,
        )
        self.seconds["after"] = round(time.monotonic() - after, 3)
        return self._finish(code if code is not None else 128 + signal.SIGTERM)

    def _verify_mode(self, repo: Path, task_dir: Path) -> int:
        """The verify mode: the task's verify command (``spec.argv``) in the workspace at
        ``start_commit`` (as its attempt left it, when it ran here); nothing is committed or pushed."""
        spec = self.spec
        try:
            kept = node_git.at_commit(
                repo,
                spec.remote,
                branch=spec.branch,
                commit=spec.start_commit,
                ref=spec.start_ref or f"refs/heads/{spec.branch}",
                timeout=spec.git_timeout,
            )
        except (node_git.NodeGitError, OSError) as error:
            return self._finish(EXIT_SETUP, "setup", str(error))
        self.result["workspace_kept"] = kept
        code = self._program(spec.argv, repo, repo, None, cache_root(spec), deadline=spec.verify_timeout)
        return self._finish(code if code is not None else 128 + signal.SIGTERM)

    def _scratch(self) -> int:
        """The scratch mode: ``spec.argv`` in a fresh directory of its own, removed afterwards."""
        root = cache_root(self.spec)
        try:
            root.mkdir(parents=True, exist_ok=True)
            scratch = Path(tempfile.mkdtemp(prefix="pagent-scratch-", dir=root))
        except OSError as error:
            return self._finish(EXIT_SETUP, "setup", f"scratch directory: {error}")
        prompt = scratch.with_name(scratch.name + ".prompt")  # beside it: not in the command's way
        try:
            code = self._program(self.spec.argv, scratch, None, prompt, root)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            prompt.unlink(missing_ok=True)
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

    def _program(
        self,
        argv: tuple[str, ...],
        top: Path,
        workspace: Path | None,
        prompt: Path | None,
        cache: Path,
        *,
        sample_every: float = 0.0,
        deadline: float | None = None,
    ) -> int | None:
        """Run ``argv`` (in ``top``, or its ``workdir``) to its end, a stop or ``deadline``
        seconds, then stop whatever it left; write its EXIT record. Its exit code (128 + N for
        signal N, 124 after the deadline, 127 if it cannot start), ``None`` if it never ended."""
        spec = self.spec
        cwd = top / spec.workdir if spec.workdir and workspace is not None else top
        if prompt is not None:
            prompt.parent.mkdir(parents=True, exist_ok=True)
            prompt.write_text(spec.prompt)
        stdin = prompt if prompt is not None else Path(os.devnull)
        started = time.monotonic()
        with node_agent.attempt_dir(spec) as own:
            env = node_agent.environment(spec, cwd, workspace=workspace, prompt=stdin, own=own, cache=cache)
            program = node_agent.spawn(argv, cwd, stdin, env, reaper=self.reaper, nonce=spec.nonce)
            if program is None:
                self._fail("launch", f"cannot start {argv[0]!r}")
                self.result["exit_code"] = 127
                write(record("EXIT", spec.nonce, {"exit_code": 127, "signal": None, "stopped": None}))
                return 127
            end = None if deadline is None else started + deadline
            node_agent.wait(
                program,
                self.reaper,
                self._wake_r,
                self._stopping,
                deadline=end,
                sample_every=sample_every,
                now=time.monotonic,
            )
            timed_out = self.reaper.status(program.pid) is None and not self._stopping()
            self.seconds["agent"] = round(time.monotonic() - started, 3)
            signalled = node_proc.stop_descendants(os.getpid(), self.reaper, spec.kill_grace)
            program.close()
        status = self.reaper.status(program.pid)
        if status is not None and os.WIFSIGNALED(status):
            self.result["signal"] = os.WTERMSIG(status)
        elif status is not None:
            self.result["exit_code"] = os.waitstatus_to_exitcode(status)
        self.result["stopped"] = self.stop_cause
        self.result["leftovers"] = len(signalled - {program.pid})
        if timed_out:
            say(f"stopped after {deadline:g} s")
            self.result.update(exit_code=124, signal=None)
        exit_info = {k: self.result[k] for k in ("exit_code", "signal", "stopped", "leftovers")}
        write(record("EXIT", spec.nonce, exit_info))
        return 124 if timed_out else self._exit_code(status)

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
