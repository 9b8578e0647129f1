"""What exactly to start for one attempt: its key, argv, environment overlay and prompt file.

Pure apart from writing the prompt file (context + the rendered template, see
``supervisor.plan.prompts``) where the run keeps it. The argv, the config files and the kept
directory come from the task's agent kind; the environment is only an overlay (the kind's
defaults, the agent's ``env`` over them, and ``PAGENT_*``): the executor merges it with its own
base environment and adds what only it knows (``PAGENT_COOKIE``, ``PAGENT_PROMPT_FILE``,
``PAGENT_WORKTREE``, the attempt's directory).
A confined attempt (``confined``: the task's ``sandbox`` is on here) carries a
``Confinement``: the agent kind's state paths less those the plan's ``sandbox_writable`` takes
away (``!PATH``), plus the plan's own, the plan's folder read-only, the network as
``sandbox_network`` says.
"""

from __future__ import annotations

from pathlib import Path

from supervisor.agents.base import AgentKind, state_paths_of
from supervisor.engine.watchdog import tick_interval
from supervisor.plan.model import Plan, Task, TaskSettings
from supervisor.plan.prompts import compose, previous_failure, render
from supervisor.seam import AttemptKey, AttemptSpec, AttemptSteps, Confinement, Workspace
from supervisor.state.records import AttemptRecord


def write_prompt(path: Path, prompt: bytes) -> None:
    """Write an attempt's prompt file, making its folder on the run's first attempt."""
    try:
        path.write_bytes(prompt)
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(prompt)


def build_spec(
    plan: Plan,
    task: Task,
    kind: AgentKind,
    *,
    key: AttemptKey,
    cwd: Path,
    workspace: Workspace | None,
    branch: str | None,
    prompt_path: Path,
    previous: AttemptRecord | None,
    confined: bool = False,
) -> AttemptSpec:
    """The spec of attempt ``key.attempt`` of ``task``; writes its prompt to ``prompt_path``."""
    agent = plan.agents[task.settings.agent]
    where = str(workspace.path if workspace is not None else cwd)
    values = {
        "task_id": task.id,
        "wave": task.wave_name,
        "branch": branch or "",
        "base": plan.base or "HEAD",
        "worktree": where,
        "attempt": key.attempt,
        "previous_failure": previous_failure(previous.reason, previous.log_path) if previous else "",
    }
    write_prompt(prompt_path, compose(task.context, render(task.prompt, values)).encode())
    setup = kind.setup(agent, task.settings)
    env = {
        **setup.env,  # the kind's defaults: the plan's env always wins
        **agent.env,
        "PAGENT_RUN_ID": key.run_id,
        "PAGENT_TASK_ID": task.id,
        "PAGENT_WAVE": task.wave_name,
        "PAGENT_ATTEMPT": str(key.attempt),
    }
    resume = previous.session_id if previous is not None else None
    return AttemptSpec(
        key=key,
        argv=kind.argv(agent, task.settings, resume),
        env=env,
        cwd=cwd,
        prompt_file=prompt_path,
        workspace=workspace,
        files=setup.files,
        home=setup.home,
        confinement=confinement(plan, task.settings, kind) if confined else None,
        steps=steps(task.settings),
    )


def steps(settings: TaskSettings) -> AttemptSteps:
    """What the executor is told in advance about an attempt of a task with ``settings``."""
    return AttemptSteps(
        marker=settings.done_marker,
        auto_commit=settings.auto_commit,
        kill_grace=settings.kill_grace,
        sample_every=tick_interval(settings.timeout, settings.stall_timeout),
    )


def confinement(plan: Plan, settings: TaskSettings, kind: AgentKind) -> Confinement:
    """What a sandboxed attempt of ``kind`` may write and read besides its workspace."""
    taken = {entry[1:] for entry in settings.sandbox_writable if entry.startswith("!")}
    own = [path for path in state_paths_of(kind) if path not in taken]
    extra = [entry for entry in settings.sandbox_writable if not entry.startswith("!")]
    return Confinement(
        writable=tuple(dict.fromkeys([*own, *extra])),
        read_only=(plan.plan_dir,),
        network=settings.sandbox_network,
    )
