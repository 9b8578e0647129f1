"""What exactly to start for one attempt: its key, argv, environment overlay and prompt file.

Pure apart from writing the prompt file (context + the rendered template, see
``supervisor.plan.prompts``) where the run keeps it. The argv, the config files and the kept
directory come from the task's agent kind; the environment is only an overlay (the kind's
defaults, the agent's ``env`` over them, and ``PAGENT_*``): the executor merges it with its own
base environment and adds what only it knows (``PAGENT_COOKIE``, ``PAGENT_PROMPT_FILE``,
``PAGENT_WORKTREE``, the attempt's directory); under an OpenTelemetry trace the attempt gets its
own context (``supervisor.engine.telemetry``).
A confined attempt (``confined``: the task's ``sandbox`` is on here) carries a
``Confinement``: the agent kind's state paths less those the plan's ``sandbox_writable`` takes
away (``!PATH``), plus the plan's own, the plan's folder read-only, the network as
``sandbox_network`` says.

Continuing and answering: with ``resume_on_retry`` the attempt continues the previous one's
session. When a person answered the previous attempt's question (``pagent answer``) and the
kind ``resumes``, the attempt continues that session with the answer as its whole prompt;
otherwise (and on every later attempt) the task's prompt starts with "A person answered: ...".
Kinds that take a session id pagent chose (``session_args``) are given the attempt's, with the
session to continue; the task's ``result_schema`` goes to ``structured_output_args``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path

from supervisor.agents.base import AgentKind, state_paths_of
from supervisor.engine.telemetry import attempt_context
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
    session_id: str | None = None,
    answer: str | None = None,
    environ: Mapping[str, str] = os.environ,
    writer: Callable[[Path, bytes], None] = write_prompt,
) -> AttemptSpec:
    """The spec of attempt ``key.attempt`` of ``task``; writes its prompt to ``prompt_path``
    (through ``writer``: a caller may write it elsewhen, before the attempt starts).

    ``previous`` is the task's latest attempt, ``answer`` the latest answer a person gave to
    any earlier one, ``session_id`` the session pagent chose for this attempt (for a kind with
    ``session_args``), ``environ`` the supervisor's environment (for telemetry).
    """
    settings = task.settings
    agent = plan.agents[settings.agent]
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
    # Answered right before: the answer continues the session that asked (where it can).
    answered = previous is not None and previous.answer is not None and previous.session_id is not None
    resume_answer = answered and kind.resumes
    if resume_answer and previous is not None and previous.answer is not None:
        prompt = previous.answer.rstrip("\n") + "\n"
    else:
        own = render(task.prompt, values)
        if answer is not None:
            own = f"A person answered: {answer.strip()}\n\n{own}"
        prompt = compose(task.context, own)
    writer(prompt_path, prompt.encode())
    setup = kind.setup(agent, task.settings)
    env = {
        **setup.env,  # the kind's defaults: the plan's env always wins
        **agent.env,
        "PAGENT_RUN_ID": key.run_id,
        "PAGENT_TASK_ID": task.id,
        "PAGENT_WAVE": task.wave_name,
        "PAGENT_ATTEMPT": str(key.attempt),
    }
    env.update(attempt_context(environ, agent.env, run_id=key.run_id, task_id=task.id, attempt=key.attempt))
    continues = settings.resume_on_retry or resume_answer
    resume = previous.session_id if previous is not None and continues else None
    own_session = kind.session_args(session_id, resume) if session_id is not None else None
    if own_session is not None:
        argv = (*kind.argv(agent, settings, None), *own_session)
    else:  # argv resumes by itself, with resume_on_retry
        argv = kind.argv(agent, replace(settings, resume_on_retry=True) if resume else settings, resume)
    if settings.result_schema is not None:
        argv = (*argv, *(kind.structured_output_args(settings.result_schema) or ()))
    return AttemptSpec(
        key=key,
        argv=argv,
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
