"""What exactly to start for one attempt: argv, environment, prompt file, cookie.

Pure apart from writing the prompt file (context + the rendered template, see ``prompts``).
The agent's own ``extra_args`` come first, then the task's; for Claude agents
``--max-budget-usd`` and ``--resume`` are added from the settings.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from supervisor.launch import proctree
from supervisor.launch.seam import AttemptSpec
from supervisor.plan.model import Plan, Task
from supervisor.plan.prompts import compose, previous_failure, render
from supervisor.state.records import AttemptRecord, RunRecord


def argv_for(plan: Plan, task: Task, previous: AttemptRecord | None) -> tuple[str, ...]:
    """The attempt's argv: the agent's command and extra_args, the task's, and Claude flags."""
    agent = plan.agents[task.settings.agent]
    argv = [*agent.command, *agent.extra_args, *task.settings.extra_args]
    if agent.kind == "claude":
        if task.settings.max_budget_usd is not None:
            argv += ["--max-budget-usd", f"{task.settings.max_budget_usd:g}"]
        if task.settings.resume_on_retry and previous is not None and previous.session_id:
            argv += ["--resume", previous.session_id]
    return tuple(argv)


def build_spec(
    plan: Plan,
    run: RunRecord,
    task: Task,
    *,
    number: int,
    cwd: Path,
    branch: str | None,
    worktree: str | None,
    run_dir: Path,
    previous: AttemptRecord | None,
    base_env: Mapping[str, str],
) -> AttemptSpec:
    """The spec of attempt ``number`` of ``task``; writes its prompt file under ``run_dir``.

    ``base_env`` is the supervisor's environment with the agent's ``env`` on top, which the
    runner builds once per agent (``Runner.agent_env``): copying ``os.environ`` per attempt was
    a tenth of the per-task overhead.
    """
    prompt_path = run_dir / "prompts" / f"{task.id}.{number}.txt"
    values = {
        "task_id": task.id,
        "wave": task.wave_name,
        "branch": branch or "",
        "base": plan.base or "HEAD",
        "worktree": worktree or str(cwd),
        "attempt": number,
        "previous_failure": previous_failure(previous.reason, previous.log_path) if previous else "",
    }
    prompt = compose(task.context, render(task.prompt, values)).encode()
    try:
        prompt_path.write_bytes(prompt)
    except FileNotFoundError:  # the run's first attempt makes the folder
        prompt_path.parent.mkdir(parents=True, exist_ok=True)
        prompt_path.write_bytes(prompt)
    cookie = f"{plan.uid}:{run.run_id}:{task.id}:{number}"
    env = {
        **base_env,
        "PAGENT_RUN_ID": run.run_id,
        "PAGENT_TASK_ID": task.id,
        "PAGENT_WAVE": task.wave_name,
        "PAGENT_ATTEMPT": str(number),
        "PAGENT_WORKTREE": worktree or str(cwd),
        "PAGENT_PROMPT_FILE": str(prompt_path),
        proctree.COOKIE_VAR: cookie,
    }
    return AttemptSpec(
        run_id=run.run_id,
        task_id=task.id,
        attempt=number,
        argv=argv_for(plan, task, previous),
        cwd=cwd,
        env=env,
        stdin_path=prompt_path,
        cookie=cookie,
    )
