"""After an attempt: what its worktree shows, and whether that confirms the agent's verdict.

In this order, for tasks with their own worktree:

1. ``done_marker``: an attempt the agent judged successful counts only if the marker file
   exists in the worktree; the marker is then removed (it is never committed).
2. ``auto_commit`` (default on): whatever the agent left uncommitted is committed on the task
   branch with a standard message, so nothing depends on the worktree surviving.
3. ``confine`` (with ``workdir``): changes of this attempt outside ``workdir`` fail it with
   reason ``outside-workdir``.
4. An attempt that changed nothing and whose final message is a question ends with
   ``needs-input`` (retrying cannot answer it). With ``require_changes``, a successful attempt
   that changed nothing fails with ``no-changes``.
5. ``verify``: a command run in the agent's working directory; non-zero fails the attempt with
   reason ``verify``. Its output goes into the attempt's log.
6. Diff stats against the task's start commit are recorded after every attempt.

Each failure is an ordinary attempt failure: retried by the policy like any other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio

from supervisor.launch.seam import AttemptSpec, Launcher, Stream
from supervisor.plan.model import Task
from supervisor.workspace import facts
from supervisor.workspace.git import git

NO_DONE_MARKER = "no-done-marker"
OUTSIDE_WORKDIR = "outside-workdir"
NO_CHANGES = "no-changes"
VERIFY = "verify"
NEEDS_INPUT = "needs-input"


@dataclass(frozen=True)
class Verdict:
    """The attempt's outcome after the checks, with what they found."""

    succeeded: bool
    reason: str
    diff: facts.DiffStats | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def remove_marker(worktree: Path, task: Task) -> bool:
    """Remove the task's completion marker from the worktree; True if it was there."""
    marker = task.settings.done_marker
    if marker is None:
        return False
    path = worktree / marker
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed


def _changed_since(worktree: Path, commit: str) -> list[str]:
    out = git(["diff", "--name-only", "--no-renames", commit, "HEAD"], worktree)
    return [line for line in out.splitlines() if line]


async def check(
    *,
    task: Task,
    worktree: Path,
    cwd: Path,
    head_before: str,
    start_commit: str,
    succeeded: bool,
    reason: str,
    number: int,
    launcher: Launcher,
    spec: AttemptSpec,
    log_path: Path,
    metrics: dict[str, Any],
) -> Verdict:
    """Apply the checks of the module docstring to an ended attempt of ``task``."""
    settings = task.settings
    detail: dict[str, Any] = {}
    marked = remove_marker(worktree, task)
    if succeeded and settings.done_marker is not None and not marked:
        succeeded, reason = False, NO_DONE_MARKER
    exclude = [settings.done_marker] if settings.done_marker else []
    if settings.auto_commit:
        message = f"pagent: work left uncommitted by {task.id}, attempt {number} ({reason})"
        if await anyio.to_thread.run_sync(facts.auto_commit, worktree, message, exclude):
            detail["auto_committed"] = True
    changed = await anyio.to_thread.run_sync(_changed_since, worktree, head_before)
    if settings.confine and settings.workdir:
        prefix = settings.workdir.rstrip("/") + "/"
        outside = [p for p in changed if not p.startswith(prefix)]
        if outside:
            detail["outside_workdir"] = outside
            if succeeded:
                succeeded, reason = False, OUTSIDE_WORKDIR
    question = str(metrics.get("result_text") or "").strip()
    if succeeded and not changed and question.endswith("?"):
        # The agent answered with a question instead of doing the work: only a person can help.
        detail["asked"] = question[-500:]
        succeeded, reason = False, NEEDS_INPUT
    if succeeded and settings.require_changes and not changed:
        succeeded, reason = False, NO_CHANGES
    if succeeded and settings.verify:
        code = await run_verify(task, cwd, launcher, spec, log_path)
        detail["verify_exit"] = code
        if code != 0:
            succeeded, reason = False, VERIFY
    diff = await anyio.to_thread.run_sync(facts.diff_stats, worktree, start_commit)
    return Verdict(succeeded, reason, diff, detail)


async def run_verify(task: Task, cwd: Path, launcher: Launcher, spec: AttemptSpec, log_path: Path) -> int:
    """Run the task's ``verify`` command like an attempt (own group, timeout), output to the log.

    Returns its exit code; a command that cannot start or is stopped counts as 127 / 124.
    """
    settings = task.settings
    verify_spec = AttemptSpec(
        run_id=spec.run_id,
        task_id=spec.task_id,
        attempt=spec.attempt,
        argv=settings.verify,
        cwd=cwd,
        env=spec.env,
        stdin_path=Path(os.devnull),
        cookie=spec.cookie,
    )
    with log_path.open("ab", buffering=0) as log:
        log.write(f"\n[pagent] verify: {' '.join(settings.verify)}\n".encode())

        def on_output(data: bytes, stream: Stream) -> None:
            log.write(data)

        try:
            async with launcher.start(verify_spec, on_output) as handle:
                with anyio.move_on_after(settings.timeout) as scope:
                    exit = await handle.wait()
                if scope.cancelled_caught:
                    await handle.stop(settings.kill_grace)
                    await handle.wait()
                    log.write(b"\n[pagent] verify: timed out\n")
                    return 124
                await handle.finish(settings.kill_grace)
        except OSError as exc:
            log.write(f"\n[pagent] verify: cannot start: {exc.strerror or exc}\n".encode())
            return 127
        code = exit.code if exit.code is not None else 128 + (exit.signal or 0)
        log.write(f"\n[pagent] verify: exit {code}\n".encode())
        return code
