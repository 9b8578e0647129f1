"""Read a plan file and validate all of it into frozen dataclasses before anything happens.

``load_plan`` is the only entry point. It reads the TOML and the prompt files and touches nothing
else: no git, no state, no directory is created. Every problem becomes a ``PlanError`` whose
message is one line naming the file and the key path, e.g.
``plan.toml: waves[0].tasks[2].retries: expected an integer >= 0, got -1``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

import tomli  # the parser stdlib's tomllib was made from, compiled: three times faster

from supervisor.errors import PlanError
from supervisor.plan import schema
from supervisor.plan.catalog import Catalog
from supervisor.plan.model import RETRYABLE_ON_REQUEST, AgentSpec, Plan, Task, TaskSettings, Wave
from supervisor.plan.names import TASK_ID, branch_problem
from supervisor.plan.outbound import UrlCheck, notify_config, publish_config
from supervisor.plan.prompts import SEPARATOR, template_problem
from supervisor.plan.units import parse_duration, parse_size

_DURATIONS = frozenset(
    {"retry_delay", "timeout", "stall_timeout", "kill_grace", "rate_limit_delay", "max_wait"}
)


def load_plan(path: str | Path, catalog: Catalog, *, check_url: UrlCheck | None = None) -> Plan:
    """Read and validate the plan at ``path``; raise ``PlanError`` (one line) on any problem.

    ``catalog`` says which agent kinds exist and which agents every plan knows (the CLI passes
    the registry's, ``supervisor.agents.registry.KINDS.catalog()``); ``check_url`` says why a
    notification URL cannot be used (the CLI passes apprise's answer; ``None``: not checked).
    """
    path = Path(path).absolute()
    label = str(path.name)
    try:
        raw_bytes = path.read_bytes()
    except OSError as exc:
        raise PlanError(f"{label}: cannot read plan {str(path)!r}: {exc.strerror or exc}") from None
    try:
        raw = tomli.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PlanError(f"{label}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except tomli.TOMLDecodeError as exc:
        raise PlanError(f"{label}: invalid TOML: {exc}") from None
    try:
        table = schema.convert(raw)
    except ValueError as exc:
        raise PlanError(f"{label}: {exc}") from None
    return _build(path, label, table, catalog, check_url)


def _build(
    path: Path, label: str, table: schema.PlanTable, catalog: Catalog, check_url: UrlCheck | None
) -> Plan:
    """Apply the cross-field rules and convert the checked tables into the frozen model."""
    plan_dir = path.parent
    # The name becomes part of branch names (pagent/<name>/<task>) and of the worktree
    # directory, so a name git refuses would fail every task at night instead of now.
    plan_name = table.name or path.stem
    if problem := branch_problem(plan_name):
        origin = "" if table.name else " (from the file name; set 'name' to choose another)"
        raise PlanError(f"{label}: name: {plan_name!r}{origin} cannot be used in branch names: it {problem}")

    agents = dict(catalog.agents)
    for name, agent in table.agents.items():
        key = f"{label}: agents.{schema.toml_key(name)}"
        if not TASK_ID.match(name):
            raise PlanError(f"{key}: agent names use letters, digits, '.', '_', '-', got {name!r}")
        rules = catalog.kinds.get(agent.kind)
        if rules is None:
            known = ", ".join(sorted(catalog.kinds))
            raise PlanError(f"{key}.kind: unknown kind {agent.kind!r} (known: {known})")
        try:
            rules.check_args((*agent.command, *agent.extra_args))
        except ValueError as exc:
            raise PlanError(f"{key}.extra_args: {exc}") from None
        agents[name] = AgentSpec(
            name=name,
            command=tuple(_expand(arg, plan_dir) for arg in agent.command),
            env=MappingProxyType({k: _expand(v, plan_dir) for k, v in agent.env.items()}),
            kind=agent.kind,
            extra_args=tuple(agent.extra_args),
            preflight=rules.default_preflight if agent.preflight is None else agent.preflight,
        )

    defaults = _merge(TaskSettings(), table.defaults, label, "defaults", agents)
    plan_context = _read_context(plan_dir, table.context_file, label, "context_file")
    if table.integrate is not None and (problem := branch_problem(table.integrate.branch)):
        raise PlanError(f"{label}: integrate.branch: {table.integrate.branch!r} {problem}")
    waves: list[Wave] = []
    seen: dict[str, str] = {}
    branches: dict[str, str] = {}
    if not table.waves:
        raise PlanError(f"{label}: waves: the plan has no [[waves]]")
    for w, wave_table in enumerate(table.waves):
        wave_name = wave_table.name or f"wave-{w + 1}"
        if not wave_table.tasks:
            raise PlanError(f"{label}: waves[{w}]: wave {wave_name!r} has no [[waves.tasks]]")
        tasks: list[Task] = []
        wave_context = _read_context(plan_dir, wave_table.context_file, label, f"waves[{w}].context_file")
        context = SEPARATOR.join(text for text in (plan_context, wave_context) if text)
        for t, task_table in enumerate(wave_table.tasks):
            where = f"waves[{w}].tasks[{t}]"
            task_id = task_table.id
            if not TASK_ID.match(task_id) or task_id.endswith(".lock") or ".." in task_id:
                raise PlanError(
                    f"{label}: {where}.id: {task_id!r} is not a safe id "
                    "(letters, digits, '.', '_', '-'; not starting with '.' or '-')"
                )
            if task_id in seen:
                raise PlanError(f"{label}: {where}.id: duplicate id {task_id!r} (first at {seen[task_id]})")
            seen[task_id] = where
            if task_table.branch is not None:
                if problem := branch_problem(task_table.branch):
                    raise PlanError(f"{label}: {where}.branch: {task_table.branch!r} {problem}")
                if task_table.branch in branches:
                    raise PlanError(
                        f"{label}: {where}.branch: {task_table.branch!r} is also the branch of "
                        f"{branches[task_table.branch]}"
                    )
                branches[task_table.branch] = where
            settings = _merge(defaults, task_table, label, where, agents)
            try:
                catalog.kinds[agents[settings.agent].kind].check_args(settings.extra_args)
            except ValueError as exc:
                origin = where if task_table.extra_args is not None else "defaults"
                raise PlanError(f"{label}: {origin}.extra_args: {exc}") from None
            if settings.confine and not settings.workdir:
                raise PlanError(f"{label}: {where}.confine: needs 'workdir' (the directory to stay in)")
            tasks.append(
                Task(
                    id=task_id,
                    wave=w,
                    wave_name=wave_name,
                    prompt=_prompt(task_table, plan_dir, label, where),
                    branch=task_table.branch,
                    settings=settings,
                    context=context,
                    depends_on=tuple(task_table.depends_on),
                    stack=task_table.stack,
                )
            )
        waves.append(Wave(index=w, name=wave_name, tasks=tuple(tasks)))

    _check_dependencies(waves, label)
    try:
        notify = notify_config(table.notify, plan_dir, check_url)
        publish = publish_config(table.publish, integrate=table.integrate is not None)
    except ValueError as exc:
        raise PlanError(f"{label}: {exc}") from None
    return Plan(
        path=path,
        name=plan_name,
        repo=(plan_dir / table.repo).resolve() if table.repo else None,
        base=table.base,
        jobs=table.jobs,
        worktree_root=(plan_dir / table.worktree_root).resolve() if table.worktree_root else None,
        max_cost_usd=table.max_cost_usd,
        keep_runs=table.keep_runs,
        integrate_branch=table.integrate.branch if table.integrate else None,
        agents=MappingProxyType(agents),
        waves=tuple(waves),
        notify=notify,
        publish=publish,
    )


def _expand(value: str, plan_dir: Path) -> str:
    """Expand the placeholders an agent command may use: ``{plan_dir}`` and ``{python}``."""
    return value.replace("{plan_dir}", str(plan_dir)).replace("{python}", sys.executable)


def _prompt(task: schema.TaskTable, plan_dir: Path, label: str, where: str) -> str:
    """The task's prompt text: inline, or read from ``prompt_file`` (relative to the plan)."""
    if task.prompt is not None and task.prompt_file is not None:
        raise PlanError(f"{label}: {where}: give either 'prompt' or 'prompt_file', not both")
    if task.prompt_file is not None:
        prompt_path = plan_dir / task.prompt_file
        try:
            text = prompt_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PlanError(f"{label}: {where}.prompt_file: no such file: {prompt_path}") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise PlanError(f"{label}: {where}.prompt_file: cannot read {prompt_path}: {exc}") from None
    elif task.prompt is not None:
        text = task.prompt
    else:
        raise PlanError(f"{label}: {where}: missing 'prompt' or 'prompt_file'")
    if not text.strip():
        raise PlanError(f"{label}: {where}: the prompt is empty")
    if problem := template_problem(text):
        key = "prompt_file" if task.prompt_file is not None else "prompt"
        raise PlanError(f"{label}: {where}.{key}: {problem}")
    return text


def _read_context(plan_dir: Path, name: str | None, label: str, key: str) -> str:
    """A context file's text (verbatim), or "" when none is set."""
    if name is None:
        return ""
    path = plan_dir / name
    try:
        return path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise PlanError(f"{label}: {key}: no such file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PlanError(f"{label}: {key}: cannot read {path}: {exc}") from None


def _check_dependencies(waves: list[Wave], label: str) -> None:
    """``depends_on`` names tasks of the same or an earlier wave, without cycles; ``stack``
    needs exactly one dependency and a worktree."""
    where = {t.id: f"waves[{w.index}].tasks[{i}]" for w in waves for i, t in enumerate(w.tasks)}
    wave_of = {t.id: t.wave for w in waves for t in w.tasks}
    graph: dict[str, tuple[str, ...]] = {}
    for wave in waves:
        for task in wave.tasks:
            key = f"{label}: {where[task.id]}"
            for dep in task.depends_on:
                if dep not in wave_of:
                    raise PlanError(f"{key}.depends_on: unknown task {dep!r}")
                if dep == task.id:
                    raise PlanError(f"{key}.depends_on: a task cannot depend on itself")
                if wave_of[dep] > task.wave:
                    raise PlanError(f"{key}.depends_on: {dep!r} runs in a later wave")
            if task.stack and len(task.depends_on) != 1:
                raise PlanError(f"{key}.stack: needs exactly one task in 'depends_on'")
            if task.stack and task.settings.isolation != "worktree":
                raise PlanError(f"{key}.stack: needs isolation = 'worktree'")
            graph[task.id] = task.depends_on
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for dep in graph[node]:
            if state.get(dep) == 1:
                cycle = " -> ".join([*path[path.index(dep) :], dep]) if dep in path else dep
                raise PlanError(f"{label}: {where[node]}.depends_on: dependency cycle: {cycle}")
            if state.get(dep) is None:
                visit(dep, [*path, dep])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [node])


def _merge(
    base: TaskSettings,
    table: schema.SettingsTable,
    label: str,
    where: str,
    agents: Mapping[str, AgentSpec],
) -> TaskSettings:
    """``base`` with every key that ``table`` sets replaced, units parsed and values checked."""
    changes: dict[str, Any] = {}
    for name in schema.SettingsTable.__struct_fields__:
        value = getattr(table, name)
        if value is None:
            continue
        key = f"{where}.{name}"
        try:
            if name in _DURATIONS:
                value = parse_duration(value)
                if name in {"timeout", "stall_timeout"} and value <= 0:
                    raise ValueError(f"expected a duration > 0, got {getattr(table, name)!r}")
            elif name == "min_free_memory":
                value = parse_size(value)
            elif name == "extra_args":
                value = tuple(value)
            elif name == "retry_on":
                unknown = sorted(set(value) - RETRYABLE_ON_REQUEST)
                if unknown:
                    allowed = ", ".join(sorted(RETRYABLE_ON_REQUEST))
                    raise ValueError(f"cannot retry on {unknown[0]!r} (allowed: {allowed})")
                value = tuple(value)
            elif name in {"workdir", "done_marker"}:
                value = _check_workdir(value)
            elif name == "verify":
                value = tuple(value)
            elif name == "agent" and value not in agents:
                known = ", ".join(sorted(agents))
                raise ValueError(f"unknown agent {value!r} (known: {known})")
        except ValueError as exc:
            raise PlanError(f"{label}: {key}: {exc}") from None
        changes[name] = value
    return replace(base, **changes) if changes else base


def _check_workdir(value: str) -> str:
    """A workdir must stay inside the worktree: relative, without '..'."""
    parts = Path(value).parts
    if Path(value).is_absolute() or ".." in parts:
        raise ValueError(f"expected a path inside the worktree, got {value!r}")
    return value
