"""Which task of a wave is offered a slot first, and how long a wave is expected to take.

The expected duration of a task is the median of its successful attempts (start to end, checks
included) in the plan's newest runs (``Store.success_durations``); a task without one is
*unknown*. With ``order = "longest-first"`` (the default) a wave's tasks are offered slots in
the order of the longest chain of work each one starts -- its own expected duration plus the
longest chain of the tasks of its wave that depend on it -- longest first, unknown tasks first of
all (they may be long), ties in plan order. Without dependencies that is the classic rule for a
short makespan (longest processing time first: a long task listed last no longer stretches its
wave). ``order = "plan"`` offers slots first come, first served, in plan order, as before.

``forecast`` simulates the same list scheduling for an estimate: ``jobs`` slots, each task on the
slot that frees first (not before the tasks of its wave it depends on have ended). Unknown tasks
count as taking no time, so with any of them the estimate is a lower bound.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from supervisor.engine import events
from supervisor.plan.model import Order, Plan, Task


def expected_durations(history: Mapping[str, Sequence[float]]) -> dict[str, float]:
    """The median duration per task of its successful attempts in ``history``."""
    import statistics  # noqa: PLC0415 - a run without history never pays for it

    return {task_id: float(statistics.median(seconds)) for task_id, seconds in history.items() if seconds}


def start_order(tasks: Sequence[Task], expected: Mapping[str, float], order: Order) -> list[Task]:
    """``tasks`` (one wave's) in the order they are offered slots (see the module docstring)."""
    if order == "plan":
        return list(tasks)
    chains = _chains(tasks, expected)
    position = {task.id: i for i, task in enumerate(tasks)}
    return sorted(tasks, key=lambda task: (-chains[task.id], position[task.id]))


def _chains(tasks: Sequence[Task], expected: Mapping[str, float]) -> dict[str, float]:
    """Per task, its expected duration (``inf`` if unknown) plus the longest chain of the tasks of
    its wave that depend on it. Iterative (dependants first), so a long chain cannot recurse."""
    ids = {task.id for task in tasks}
    dependants: dict[str, list[str]] = {task.id: [] for task in tasks}
    waiting = {task.id: 0 for task in tasks}
    for task in tasks:
        for dep in task.depends_on:
            if dep in ids:
                dependants[dep].append(task.id)
                waiting[dep] += 1  # dependants not yet measured
    chains: dict[str, float] = {}
    by_id = {task.id: task for task in tasks}
    ready = [task_id for task_id, n in waiting.items() if n == 0]
    while ready:
        task_id = ready.pop()
        longest = max((chains[child] for child in dependants[task_id]), default=0.0)
        chains[task_id] = expected.get(task_id, math.inf) + longest
        for dep in by_id[task_id].depends_on:
            if dep in ids:
                waiting[dep] -= 1
                if waiting[dep] == 0:
                    ready.append(dep)
    return chains


def schedule(plan: Plan, pending: Collection[str], expected: Mapping[str, float]) -> events.Schedule:
    """The run's pending tasks per wave in the order they are offered slots, each with its
    expected duration and the pending tasks of its wave it waits for."""
    waves = []
    for wave in plan.waves:
        todo = [task for task in wave.tasks if task.id in pending]
        if not todo:
            continue
        ids = {task.id for task in todo}
        planned = tuple(
            events.Planned(task.id, expected.get(task.id), tuple(d for d in task.depends_on if d in ids))
            for task in start_order(todo, expected, plan.order)
        )
        waves.append(events.WavePlan(wave.index, wave.name, planned))
    return events.Schedule(plan.jobs, plan.order, tuple(waves))


@dataclass(frozen=True)
class Forecast:
    """Expected seconds until the tasks counted have ended; ``unknown`` of them had no history
    (counted as taking no time, so ``seconds`` is then a lower bound)."""

    seconds: float
    unknown: int = 0

    def __add__(self, other: Forecast) -> Forecast:
        return Forecast(self.seconds + other.seconds, self.unknown + other.unknown)


def forecast(jobs: int, planned: Sequence[events.Planned], busy: Sequence[float] = ()) -> Forecast:
    """How long ``planned`` takes on ``jobs`` slots, offered in order, after the attempts still
    running (``busy``: the seconds each is expected to run on) free their slots."""
    if not planned and not busy:
        return Forecast(0.0)
    position = {p.task_id: i for i, p in enumerate(planned)}
    waits = [[position[d] for d in p.after if d in position] for p in planned]
    children: list[list[int]] = [[] for _ in planned]
    blocked = [len(w) for w in waits]
    for i, deps in enumerate(waits):
        for dep in deps:
            children[dep].append(i)
    ready = [i for i, n in enumerate(blocked) if n == 0]
    heapq.heapify(ready)
    slots = sorted(max(0.0, b) for b in busy)[:jobs]
    slots += [0.0] * (jobs - len(slots))
    heapq.heapify(slots)
    ends = [0.0] * len(planned)
    latest = max(slots, default=0.0)
    while ready:
        i = heapq.heappop(ready)
        free = heapq.heappop(slots)
        start = max([free, *(ends[d] for d in waits[i])])
        ends[i] = start + (planned[i].expected or 0.0)
        latest = max(latest, ends[i])
        heapq.heappush(slots, ends[i])
        for child in children[i]:
            blocked[child] -= 1
            if blocked[child] == 0:
                heapq.heappush(ready, child)
    return Forecast(latest, sum(p.expected is None for p in planned))


def run_forecast(plan: events.Schedule, start: int = 0) -> Forecast:
    """The expected time of the waves of ``plan`` from its ``start``-th on, one after another."""
    total = Forecast(0.0)
    for wave in plan.waves[start:]:
        total = total + forecast(plan.jobs, wave.tasks)
    return total
