"""The live progress view on a terminal: GNU parallel's ``--bar``, per task.

Shown only when stderr is a terminal (never under cron, never with ``--quiet`` or
``--log-format json``). Below the scrolling event lines it keeps one row per running task — its
attempt, elapsed time, expected duration and last output line — and a footer with the counts,
the cost so far and the ETA of the wave and of the run: the run's ``Schedule`` (expected
durations from earlier runs) replayed from now, the running attempts holding their slots for
what they are expected to have left (``supervisor.engine.order.forecast``).

What an agent prints never drives the terminal: its last line is stripped of escape sequences
and control characters (``supervisor.plan.names.printable``) and shown as ``rich.text.Text``,
never parsed as rich markup (``[bold]`` stays literal; ``[/nope]`` cannot break the row).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from supervisor.engine import events, order
from supervisor.plan.names import printable
from supervisor.plan.units import format_duration
from supervisor.ui.describe import eta


@dataclass
class _Running:
    attempt: int
    started: float
    last_line: str = ""


@dataclass
class ProgressView:
    """Follows runner events and renders the live region; feed it every event."""

    total: int = 0
    done: int = 0
    failed: int = 0
    cost: float | None = None
    running: dict[str, _Running] = field(default_factory=dict)
    schedule: events.Schedule | None = None
    wave: int | None = None  # the index of the wave that runs now
    finished: set[str] = field(default_factory=set)

    def __call__(self, event: events.Event) -> None:
        match event:
            case events.RunStarted():
                self.total = event.tasks
            case events.Schedule():
                self.schedule = event
            case events.WaveStarted():
                self.wave = event.index
            case events.AttemptStarted():
                self.running[event.task_id] = _Running(event.attempt, time.monotonic())
            case events.Output() if event.task_id in self.running:
                self.running[event.task_id].last_line = printable(event.line)
            case events.AttemptFailed():
                self.running.pop(event.task_id, None)
            case events.TaskFinished():
                self.running.pop(event.task_id, None)
                self.finished.add(event.task_id)
                if event.state == "succeeded":
                    self.done += 1
                else:
                    self.failed += 1
            case events.CostUpdate():
                self.cost = event.total_usd

    def __rich__(self) -> RenderableType:
        table = Table(box=None, show_header=bool(self.running), pad_edge=False, expand=False)
        table.add_column("task", no_wrap=True, style="bold")
        table.add_column("try", justify="right")
        table.add_column("elapsed", justify="right")
        table.add_column("expected", justify="right")
        table.add_column("last output", no_wrap=True, overflow="ellipsis", max_width=80)
        now = time.monotonic()
        expected = self._expected()
        for task_id, running in sorted(self.running.items()):
            guess = expected.get(task_id)
            table.add_row(
                Text(task_id),
                str(running.attempt),
                format_duration(now - running.started),
                "?" if guess is None else format_duration(guess),
                Text(running.last_line),
            )
        waiting = max(0, self.total - self.done - self.failed - len(self.running))
        footer = Text(
            f"{self.done} done, {self.failed} failed, {len(self.running)} running, {waiting} waiting"
            + (f", ${self.cost:.4f}" if self.cost is not None else "")
            + self._etas(now),
            style="dim",
        )
        return Group(table, footer)

    def _expected(self) -> dict[str, float | None]:
        """The expected duration of every task of the current wave."""
        for wave in self.schedule.waves if self.schedule is not None else ():
            if wave.index == self.wave:
                return {p.task_id: p.expected for p in wave.tasks}
        return {}

    def _etas(self, now: float) -> str:
        """ ", wave ETA 2m10s, run ETA 5m02s" from the schedule and what runs now (or nothing)."""
        if self.schedule is None or self.wave is None:
            return ""
        at = next((i for i, w in enumerate(self.schedule.waves) if w.index == self.wave), None)
        if at is None:
            return ""
        planned = self.schedule.waves[at].tasks
        expected = {p.task_id: p.expected for p in planned}
        busy, unknown = [], 0
        for task_id, running in self.running.items():
            guess = expected.get(task_id)
            if guess is None:
                unknown += 1
            else:
                busy.append(max(0.0, guess - (now - running.started)))
        queued = [p for p in planned if p.task_id not in self.finished and p.task_id not in self.running]
        wave = order.forecast(self.schedule.jobs, queued, busy) + order.Forecast(0.0, unknown)
        run = wave + order.run_forecast(self.schedule, at + 1)
        return f", wave ETA {eta(wave)}, run ETA {eta(run)}"


def live(view: ProgressView) -> Live:
    """A rich ``Live`` display of ``view`` on stderr; event lines print above it."""
    console = Console(stderr=True)
    return Live(view, console=console, refresh_per_second=2, transient=True, redirect_stderr=True)


def tee(*sinks: Any) -> Any:
    """One event callback that calls each of ``sinks`` in turn."""

    def emit(event: events.Event) -> None:
        for sink in sinks:
            sink(event)

    return emit
