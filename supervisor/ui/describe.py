"""What ``pagent-run --dry-run`` prints: the waves, their tasks in the order they would start,
and how long each task, each wave and the run are expected to take.

The estimates come from the plan's earlier runs (``supervisor.engine.order``), read from its
state database opened read-only; a plan that never ran (or whose database cannot be read) is
described without them. Nothing is created.
"""

from __future__ import annotations

from collections.abc import Mapping

from supervisor.engine import order
from supervisor.errors import StateError
from supervisor.plan.model import Plan
from supervisor.plan.units import format_duration
from supervisor.state.layout import Layout
from supervisor.state.store import Store


def describe_plan(plan: Plan) -> str:
    """The dry-run text of ``plan`` (not yet made printable: the caller does that)."""
    expected, problem = _expected(plan)
    schedule = order.schedule(plan, {task.id for task in plan.tasks}, expected)
    tasks = {task.id: task for task in plan.tasks}
    lines = [
        f"plan {plan.name}: {len(plan.tasks)} tasks in {len(plan.waves)} waves, jobs = {plan.jobs}, "
        f"order = {plan.order}"
    ]
    if (executor := plan.executor).kind == "ray":
        wanted = ", ".join(f"{name}={amount:g}" for name, amount in executor.resources.items())
        where = executor.address or "$RAY_ADDRESS"
        lines.append(f"executor: ray at {where}, each attempt needs {wanted}, branches via {executor.remote}")
    for wave in schedule.waves:
        lines.append(
            f"wave {wave.index + 1} {wave.name!r}: expected {eta(order.forecast(plan.jobs, wave.tasks))}"
        )
        for planned in wave.tasks:
            s = tasks[planned.task_id].settings
            where = f", workdir {s.workdir}" if s.workdir else ""
            if s.isolation == "worktree" and s.workspace == "clone":
                where += ", in a clone"
            if s.sandbox is not False:
                where += ", sandbox " + ("auto" if s.sandbox == "auto" else "on")
                where += "" if s.sandbox_network else " (no network)"
            took = "no history" if planned.expected is None else format_duration(planned.expected)
            lines.append(
                f"  {planned.task_id}: agent {s.agent}, retries {s.retries}, timeout {s.timeout:g}s, "
                f"isolation {s.isolation}{where}, expected {took}"
            )
    lines.append(f"expected for the whole run: {eta(order.run_forecast(schedule))}")
    if problem is not None:
        lines.append(f"(no estimates: {problem})")
    return "\n".join(lines)


def eta(guess: order.Forecast) -> str:
    """A forecast for people: "3m05s", "at least 3m05s (2 tasks without history)", "unknown"."""
    if guess.unknown and guess.seconds <= 0:
        return f"unknown ({guess.unknown} without history)"
    if guess.unknown:
        return f"at least {format_duration(guess.seconds)} ({guess.unknown} without history)"
    return format_duration(guess.seconds)


def _expected(plan: Plan) -> tuple[Mapping[str, float], str | None]:
    """The expected duration per task from the plan's state database, read-only; and why there
    are none when it cannot be read (a plan that never ran has none, and no problem)."""
    path = Layout.of(plan).database
    if not path.exists():
        return {}, None
    try:
        store = Store(path, read_only=True)
        try:
            return order.expected_durations(store.success_durations(plan.key)), None
        finally:
            store.close()
    except StateError as exc:
        return {}, str(exc)
