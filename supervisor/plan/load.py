"""Read a plan file and validate all of it into frozen dataclasses before anything happens.

``load_plan`` is the only entry point. It reads the TOML and the prompt files and touches nothing
else: no git, no state, no directory is created. Every problem becomes a ``PlanError`` whose
message is one line naming the file and the key path, e.g.
``plan.toml: waves[0].tasks[2].retries: expected an integer >= 0, got -1``. The aim: whatever
``load_plan`` accepts cannot fail at night for a reason visible in the plan (``supervisor.plan.rules``
lists those rules; files are read by ``supervisor.plan.files``, never blocking, bounded).
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
from supervisor.plan.across import check_branches, check_dependencies
from supervisor.plan.catalog import Catalog
from supervisor.plan.executor import check_remote_tasks, executor_config
from supervisor.plan.files import PLAN_LIMIT, PROMPT_LIMIT, FileProblem, read_bounded, read_text
from supervisor.plan.model import RETRYABLE_ON_REQUEST, AgentSpec, Plan, Task, TaskSettings, Wave
from supervisor.plan.names import TASK_ID, branch_problem, has_control, id_problem, short
from supervisor.plan.outbound import UrlCheck, notify_config, publish_config
from supervisor.plan.prompts import SEPARATOR, template_problem
from supervisor.plan.resultschema import load_schema
from supervisor.plan.rules import (
    copy_problem,
    env_name_problem,
    inside_problem,
    nul_in,
    sandbox_settings_problem,
    unisolated_problem,
    workspace_of,
    writable_problem,
)
from supervisor.plan.units import parse_duration, parse_size

_DURATIONS = frozenset(
    {"retry_delay", "timeout", "stall_timeout", "kill_grace", "rate_limit_delay", "max_wait", "setup_timeout"}
)
_POSITIVE = frozenset({"timeout", "stall_timeout", "setup_timeout"})
_HOOKS = frozenset({"setup", "before_attempt", "teardown"})


def load_plan(path: str | Path, catalog: Catalog, *, check_url: UrlCheck | None = None) -> Plan:
    """Read and validate the plan at ``path``; raise ``PlanError`` (one line) on any problem.

    ``catalog`` says which agent kinds exist and which agents every plan knows (the CLI passes
    the registry's, ``supervisor.agents.registry.KINDS.catalog()``); ``check_url`` says why a
    notification URL cannot be used (the CLI passes apprise's answer; ``None``: not checked).
    """
    path = Path(path).resolve()  # the plan's real path: its identity (see PlanFile)
    label = str(path.name)
    try:
        raw_bytes = read_bounded(path, PLAN_LIMIT)
    except FileProblem as exc:
        raise PlanError(f"{label}: cannot read plan {str(path)!r}: it {exc}") from None
    except OSError as exc:
        raise PlanError(f"{label}: cannot read plan {str(path)!r}: {exc.strerror or exc}") from None
    try:
        raw = tomli.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise PlanError(f"{label}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except tomli.TOMLDecodeError as exc:
        raise PlanError(f"{label}: invalid TOML: {exc}") from None
    # TOML cannot hold a raw NUL: only the escapes \u0000 and \U00000000 make one, so a file
    # without either needs no walk (a 10,000-task plan would spend 80 ms on it).
    if (b"\\u0000" in raw_bytes or b"\\U00000000" in raw_bytes) and (where := nul_in(raw)) is not None:
        raise PlanError(
            f"{label}: {where}: contains a NUL character, which no argument, environment or path can carry"
        )
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
        if agent.account is not None and not TASK_ID.match(agent.account):
            raise PlanError(f"{key}.account: use letters, digits, '.', '_', '-', got {short(agent.account)}")
        for env_name in agent.env:
            if problem := env_name_problem(env_name):
                raise PlanError(f"{key}.env: {problem}")
        rules = catalog.kinds.get(agent.kind)
        if rules is None:
            known = ", ".join(sorted(catalog.kinds))
            raise PlanError(f"{key}.kind: unknown kind {agent.kind!r} (known: {known})")
        if agent.command is None and rules.default_command is None:
            raise PlanError(f"{key}: missing required key 'command'")
        command = rules.default_command if agent.command is None else tuple(agent.command)
        assert command is not None
        try:
            rules.check_args((*command, *agent.extra_args))
        except ValueError as exc:
            raise PlanError(f"{key}.extra_args: {exc}") from None
        try:
            idle = None if agent.idle_timeout is None else parse_duration(agent.idle_timeout)
            if idle is not None and idle <= 0:
                raise ValueError(f"expected a duration > 0, got {agent.idle_timeout!r}")
        except ValueError as exc:
            raise PlanError(f"{key}.idle_timeout: {exc}") from None
        spec = AgentSpec(
            name=name,
            command=tuple(_expand(arg, plan_dir) for arg in command),
            env=MappingProxyType({k: _expand(v, plan_dir) for k, v in agent.env.items()}),
            kind=agent.kind,
            extra_args=tuple(agent.extra_args),
            preflight=rules.default_preflight if agent.preflight is None else agent.preflight,
            base_url=agent.base_url,
            model=agent.model,
            home=agent.home,
            idle_timeout=idle,
            account=agent.account,
        )
        if fault := rules.check_agent(spec):
            raise PlanError(f"{key}.{fault[0]}: {fault[1]}")
        agents[name] = spec

    defaults = _merge(TaskSettings(), table.defaults, label, "defaults", agents, plan_dir=plan_dir)
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
        if has_control(wave_name):  # it is printed on terminals and in cron mail
            raise PlanError(f"{label}: waves[{w}].name: {wave_name!r} contains control characters")
        if not wave_table.tasks:
            raise PlanError(f"{label}: waves[{w}]: wave {wave_name!r} has no [[waves.tasks]]")
        tasks: list[Task] = []
        wave_context = _read_context(plan_dir, wave_table.context_file, label, f"waves[{w}].context_file")
        context = SEPARATOR.join(text for text in (plan_context, wave_context) if text)
        for t, task_table in enumerate(wave_table.tasks):
            where = f"waves[{w}].tasks[{t}]"
            task_id = task_table.id
            if problem := id_problem(task_id):
                raise PlanError(f"{label}: {where}.id: {short(task_id)} {problem}")
            if task_id in seen:
                raise PlanError(f"{label}: {where}.id: duplicate id {task_id!r} (first at {seen[task_id]})")
            seen[task_id] = where
            if task_table.branch is not None:
                if problem := branch_problem(task_table.branch):
                    raise PlanError(f"{label}: {where}.branch: {short(task_table.branch)} {problem}")
                if task_table.branch in branches:
                    raise PlanError(
                        f"{label}: {where}.branch: {task_table.branch!r} is also the branch of "
                        f"{branches[task_table.branch]}"
                    )
                branches[task_table.branch] = where
            settings = _merge(defaults, task_table, label, where, agents, plan_dir=plan_dir)
            try:
                catalog.kinds[agents[settings.agent].kind].check_args(settings.extra_args)
            except ValueError as exc:
                origin = where if task_table.extra_args is not None else "defaults"
                raise PlanError(f"{label}: {origin}.extra_args: {exc}") from None
            if settings.confine and not settings.workdir:
                raise PlanError(f"{label}: {where}.confine: needs 'workdir' (the directory to stay in)")
            spec = agents[settings.agent]
            if settings.result_schema is not None and not catalog.kinds[spec.kind].structured_output:
                origin = "" if task_table.result_schema is not None else " (from [defaults])"
                raise PlanError(
                    f"{label}: {where}.result_schema{origin}: agent {spec.name!r} (kind {spec.kind}) "
                    "cannot return a structured result"
                )
            if unisolated := unisolated_problem(settings):
                name, why = unisolated
                origin = "" if getattr(task_table, name) is not None else " (from [defaults])"
                raise PlanError(f"{label}: {where}.{name}{origin}: {why}")
            state_paths = catalog.kinds[agents[settings.agent].kind].state_paths
            given = task_table.workspace if task_table.workspace is not None else table.defaults.workspace
            if unsandboxable := sandbox_settings_problem(settings, given, state_paths):
                name, why = unsandboxable
                origin = "" if getattr(task_table, name) is not None else " (from [defaults])"
                raise PlanError(f"{label}: {where}.{name}{origin}: {why}")
            if (workspace := workspace_of(settings, given)) != settings.workspace:
                settings = replace(settings, workspace=workspace)
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

    check_dependencies(waves, label)
    check_branches(waves, plan_name, table.integrate.branch if table.integrate else None, label)
    try:
        notify = notify_config(table.notify, plan_dir, check_url)
        publish = publish_config(table.publish, integrate=table.integrate is not None)
    except ValueError as exc:
        raise PlanError(f"{label}: {exc}") from None
    executor = executor_config(table.executor, plan_dir, label)
    check_remote_tasks(waves, executor, label)
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
        order=table.order,
        executor=executor,
    )


def _expand(value: str, plan_dir: Path) -> str:
    """Expand the placeholders an agent command may use: ``{plan_dir}`` and ``{python}``."""
    return value.replace("{plan_dir}", str(plan_dir)).replace("{python}", sys.executable)


def _prompt(task: schema.TaskTable, plan_dir: Path, label: str, where: str) -> str:
    """The task's prompt text: inline, or read from ``prompt_file`` (relative to the plan)."""
    if task.prompt is not None and task.prompt_file is not None:
        raise PlanError(f"{label}: {where}: give either 'prompt' or 'prompt_file', not both")
    if task.prompt_file is not None:
        text = _read_file(plan_dir / task.prompt_file, label, f"{where}.prompt_file")
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
    return _read_file(plan_dir / name, label, key).strip()


def _read_file(path: Path, label: str, key: str) -> str:
    """A prompt or context file's text: a regular file of at most 1 MiB (``files.PROMPT_LIMIT``),
    UTF-8; read without ever blocking (a FIFO, ``/dev/zero`` and directories are refused)."""
    try:
        return read_text(path, PROMPT_LIMIT)
    except FileNotFoundError:
        raise PlanError(f"{label}: {key}: no such file: {path}") from None
    except FileProblem as exc:
        raise PlanError(f"{label}: {key}: cannot read {path}: it {exc}") from None
    except OSError as exc:
        raise PlanError(f"{label}: {key}: cannot read {path}: {exc.strerror or exc}") from None


def _merge(
    base: TaskSettings,
    table: schema.SettingsTable,
    label: str,
    where: str,
    agents: Mapping[str, AgentSpec],
    *,
    plan_dir: Path,
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
                if name in _POSITIVE and value <= 0:
                    raise ValueError(f"expected a duration > 0, got {getattr(table, name)!r}")
            elif name in _HOOKS:
                value = tuple(tuple(argv) for argv in value)
            elif name == "copy":
                for index, entry in enumerate(value):
                    if problem := copy_problem(entry):
                        key = f"{key}[{index}]"
                        raise ValueError(problem)
                value = tuple(dict.fromkeys(value))
            elif name == "result_schema":
                value = load_schema(value, plan_dir)
            elif name == "setting_sources":
                value = tuple(dict.fromkeys(value))
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
            elif name in {"workdir", "done_marker"} and (
                problem := inside_problem(value, marker=name == "done_marker")
            ):
                raise ValueError(problem)
            elif name == "verify":
                value = tuple(value)
            elif name == "sandbox_writable":
                for entry in value:
                    if problem := writable_problem(entry):
                        raise ValueError(problem)
                value = tuple(value)
            elif name == "agent" and value not in agents:
                known = ", ".join(sorted(agents))
                raise ValueError(f"unknown agent {value!r} (known: {known})")
        except ValueError as exc:
            raise PlanError(f"{label}: {key}: {exc}") from None
        changes[name] = value
    return replace(base, **changes) if changes else base
