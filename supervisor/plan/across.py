"""Rules across the tasks of a plan: dependencies (known, not later, no cycles), branches (every
task's and the integration branch can exist side by side in one repository), and memory no
machine can offer (``check_memory``, given the executor's limit by whoever knows it), and a sandbox
where attempts cannot be confined (``check_sandbox``, given the executor's answer)."""

from __future__ import annotations

from supervisor.errors import PlanError
from supervisor.plan.model import Plan, Wave
from supervisor.plan.names import clashes, short


def check_dependencies(waves: list[Wave], label: str) -> None:
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


def check_branches(waves: list[Wave], plan_name: str, integrate: str | None, label: str) -> None:
    """Every task's branch (its ``branch``, or the default ``pagent/<plan>/<task>``) and the
    integration branch can exist side by side: git cannot hold ``feat`` and ``feat/b`` at once.

    A task's explicit branch equal to another task's default is fine (one of them gets the run
    id appended, as for any branch that is taken); the integration branch equal to a task's is not.
    """
    if integrate is None and all(task.branch is None for wave in waves for task in wave.tasks):
        return  # default branches alone never clash: an id holds no '/'
    named: list[tuple[str, str]] = []
    for wave in waves:
        for i, task in enumerate(wave.tasks):
            where = f"waves[{wave.index}].tasks[{i}]"
            if task.branch is not None:
                named.append((task.branch, f"{where}.branch"))
            else:
                named.append((f"pagent/{plan_name}/{task.id}", f"{where} (its default branch)"))
    if integrate is not None:
        for branch, owner in named:
            if branch == integrate:
                raise PlanError(f"{label}: integrate.branch: {integrate!r} is also the branch of {owner}")
        named.append((integrate, "integrate.branch"))
    if (pair := clashes(named)) is not None:
        (first, first_owner), (second, second_owner) = pair
        raise PlanError(
            f"{label}: {second_owner}: {short(second)} and {short(first)} of {first_owner} cannot "
            "both exist (git cannot have a branch and a branch below it)"
        )


def check_memory(plan: Plan, limit: int | None) -> None:
    """No task asks for more free memory (``min_free_memory``) than where it runs can ever have
    (``limit``, the executor's ``capacity_limit``; ``None``: unknown, nothing is checked): such
    a task would wait for memory for ever."""
    if limit is None:
        return
    for wave in plan.waves:
        for i, task in enumerate(wave.tasks):
            wanted = task.settings.min_free_memory
            if wanted > limit:
                key = f"{plan.path.name}: waves[{wave.index}].tasks[{i}].min_free_memory"
                raise PlanError(
                    f"{key}: {_size(wanted)} is more than the {_size(limit)} of memory attempts can "
                    "ever have here: the task would wait for ever"
                )


def wants_sandbox(plan: Plan) -> bool:
    """Whether any task asks for the sandbox (``true`` or ``"auto"``)."""
    return any(task.settings.sandbox is not False for task in plan.tasks)


def check_sandbox(plan: Plan, problem: str | None) -> list[str]:
    """Refuse ``sandbox = true`` where attempts cannot be confined (``problem``, the executor's
    ``confinement_problem``; ``None``: they can): ``PlanError`` naming the first such task and
    why. Returns the ids of the ``"auto"`` tasks that will run unconfined (empty if none)."""
    if problem is None:
        return []
    for wave in plan.waves:
        for i, task in enumerate(wave.tasks):
            if task.settings.sandbox is True:
                key = f"{plan.path.name}: waves[{wave.index}].tasks[{i}].sandbox"
                raise PlanError(f"{key}: no sandbox here: {problem}")
    return [task.id for task in plan.tasks if task.settings.sandbox == "auto"]


def _size(size: int) -> str:
    """Bytes for people: "512 MiB", "7.8 GiB"."""
    value, unit = float(size), "bytes"
    for name in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024:
            break
        value, unit = value / 1024, name
    if unit == "bytes":
        return f"{size} bytes"
    return f"{value:.1f}".rstrip("0").rstrip(".") + f" {unit}"
