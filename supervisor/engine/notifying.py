"""Notifications of a run per ``[notify]``: what happened, sent without ever holding the run up.

The ``Notifier`` follows the run's events (``observe`` is one more event sink): a task that ends
``needs-input``, a task that failed for good (``task-failed``, off by default) and the run
stopping early (``StoppedEarly``: auth, billing, a usage limit beyond ``max_wait``, max-cost)
each start a send in the background, so the run goes on at once. ``run_finished`` sends the
last one. Leaving ``sending`` waits for sends still under way, each bounded by
``[notify] timeout`` and all running side by side, so a target that hangs adds at most that
bound to the run. Every send is recorded on the run (``notifications``) through the run state,
and each target's answer is emitted as a ``Notified`` event (one line; secrets masked).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from supervisor.engine import events
from supervisor.engine.runstate import RunState
from supervisor.plan.model import NotifyConfig
from supervisor.plan.model import NotifyEvent as Event
from supervisor.reasons import Reason

if TYPE_CHECKING:
    from supervisor.handoff.notify import TargetResult
    from supervisor.handoff.payload import Notification

Send = Callable[[NotifyConfig, "Notification"], Awaitable[list["TargetResult"]]]

# The hand-off's payload and sender are imported only by a run that notifies (``[notify]``
# enabled): the others never load them (nor apprise's loader, nor the HTTP code).


async def _notify(config: NotifyConfig, note: Notification) -> list[TargetResult]:
    """The hand-off's sender (``supervisor.handoff.notify.notify``), imported when first used."""
    from supervisor.handoff.notify import notify  # noqa: PLC0415

    return await notify(config, note)


class Notifier:
    """Sends a run's notifications (see the module docstring)."""

    def __init__(
        self,
        config: NotifyConfig,
        state: RunState,
        emit: Callable[[events.Event], None],
        *,
        send: Send = _notify,
    ) -> None:
        self._config = config
        self._state = state
        self._emit = emit
        self._send = send
        self._group: TaskGroup | None = None
        self._stops: set[str] = set()

    @asynccontextmanager
    async def sending(self) -> AsyncIterator[None]:
        """While inside, observed events send in the background; leaving waits for them."""
        async with anyio.create_task_group() as group:
            self._group = group
            try:
                yield
            finally:
                self._group = None

    def observe(self, event: events.Event) -> None:
        """An event sink: start a notification for the events ``[notify] on`` asks for."""
        if self._group is None or not self._config.enabled:
            return
        try:
            note = self._note_for(event)
        except Exception as exc:  # a notification must never take the run down with it
            self._emit(events.Notice(f"cannot build a notification: {type(exc).__name__}: {exc}"))
            return
        if note is not None:
            self._group.start_soon(self.deliver, note)

    def _note_for(self, event: events.Event) -> Notification | None:
        """The notification ``event`` calls for, or ``None``."""
        from supervisor.handoff import payload  # noqa: PLC0415 - only when notifying (``observe``)

        note: Notification | None = None
        match event:
            case events.TaskFinished(state="failed") if Reason.of(event.reason) is Reason.NEEDS_INPUT:
                if self._config.wants(Event.NEEDS_INPUT):
                    note = payload.needs_input(self._state.view(only=[event.task_id]), event.task_id)
            case events.TaskFinished(state="failed"):
                if self._config.wants(Event.TASK_FAILED):
                    note = payload.task_failed(self._state.view(only=[event.task_id]), event.task_id)
            case events.StoppedEarly() if event.reason not in self._stops:
                self._stops.add(event.reason)
                if self._config.wants(Event.STOPPED_EARLY):
                    view = self._state.view(only=[])
                    note = payload.stopped_early(view, event.reason, event.message)
        return note

    async def run_finished(self, view: dict[str, Any], report: Path | None) -> list[TargetResult]:
        """Send (and record) the run-finished notification of ``view``; ``report`` is the path
        of its report.html (``None`` if there is none)."""
        if not self._config.enabled:
            return []
        from supervisor.handoff import payload  # noqa: PLC0415 - only when notifying

        return await self.deliver(payload.run_finished(view, report))

    async def deliver(self, note: Notification) -> list[TargetResult]:
        """Send ``note`` to every target, record the answers on the run, emit one event per
        target. Bounded by ``[notify] timeout``; never raises."""
        results = await self._send(self._config, note)
        if not results:
            return results
        self._state.record_notification(
            {
                "event": note.event.value,
                "at": round(time.time(), 3),
                "title": note.title,
                "results": [result.to_dict() for result in results],
            }
        )
        for result in results:
            self._emit(
                events.Notified(note.event.value, result.target, result.ok, result.error, result.tries)
            )
        return results
