"""The run state: the only writer of a run's task and attempt records.

Every change of a task run goes through ``check_transition`` and is persisted *before* it is
applied in memory, so what the database says is never behind what the engine acts on. Ending an
attempt and moving its task on is one transaction (``end_attempt``); so are beginning an attempt,
repairing a dead run (``abandon``) and reopening a run for ``--retry-failed`` (``reopen``).
Heartbeats and live notes of running attempts are written here too, refs that others moved
while an attempt ran (``record_moved_refs``), a person's answer to a task that needs input
(``record_answer``), and the hand-off:
what was published (``record_publish``, ``record_integration_publish``) and which notifications
were sent (``record_notification``), so no other module of the engine holds the store for writing.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import fields, replace
from types import MappingProxyType
from typing import Any, NamedTuple, TypeVar

import anyio

from supervisor.errors import StateError
from supervisor.reasons import Reason
from supervisor.state.records import (
    AttemptRecord,
    RunRecord,
    RunStatus,
    TaskRecord,
    TaskState,
    check_transition,
)
from supervisor.state.store import Store
from supervisor.state.views import run_view, task_view

T = TypeVar("T")

# Seconds after its start at which a running attempt's reference is written on its own; one that
# ends sooner writes it with its end (``RunState.attempt_running``).
REF_DELAY = 0.2


class RunState:
    """The records of one run, in memory and in the store (see the module docstring)."""

    def __init__(self, store: Store, run: RunRecord, task_ids: Iterable[str] | None = None) -> None:
        self._store = store
        self._run = run
        wanted = None if task_ids is None else set(task_ids)
        # Tasks of the run that are no longer in the plan are ignored (documented for --retry-failed).
        self._records = {
            r.task_id: r for r in store.tasks(run.run_id) if wanted is None or r.task_id in wanted
        }
        # The run's recorded spend so far (a retried run keeps its earlier spend).
        self.spent = store.run_cost(run.run_id) or 0.0
        # Set when a task reaches a final state; dependent tasks wait on these.
        self._finished = {task_id: anyio.Event() for task_id in self._records}
        # Reference writes of running attempts not yet waited for (``attempt_running``): asked
        # (a future), or still to be asked (the timer, and the columns it will write).
        self._refs: dict[tuple[str, int], asyncio.Future[None] | _LaterRef] = {}
        for record in self._records.values():
            if record.state.finished:
                self._finished[record.task_id].set()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def run(self) -> RunRecord:
        return self._run

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def records(self) -> Mapping[str, TaskRecord]:
        """Every task run of this invocation, by task id (read only)."""
        return MappingProxyType(self._records)

    def __getitem__(self, task_id: str) -> TaskRecord:
        return self._records[task_id]

    def attempts(self, task_id: str) -> list[AttemptRecord]:
        """The attempts of one task run so far, in order."""
        return self._store.attempts(self.run_id, task_id)

    def view(self, only: Collection[str] | None = None) -> dict[str, Any]:
        """The run's status view now (``pagent status --json``); with ``only``, just those tasks."""
        return run_view(self._store, self._run, only=only)

    def task_view(self, task_id: str) -> dict[str, Any]:
        """One task's status view now."""
        return task_view(self._records[task_id], self.attempts(task_id), time.time())

    def history(self) -> dict[str, list[float]]:
        """How long each task's successful attempts took in the plan's newest runs (seconds,
        newest first): what the schedule's estimates come from (``supervisor.engine.order``)."""
        return self._store.success_durations(self._run.plan_key)

    async def wait_finished(self, task_id: str) -> None:
        """Return once ``task_id`` is in a final state."""
        await self._finished[task_id].wait()

    # -- changing task runs ----------------------------------------------------------------------

    def set_task(self, task_id: str, **changes: Any) -> TaskRecord:
        """Persist a change of a task run, then apply it in memory; return the new record."""
        record = self._records[task_id]
        if "state" in changes:
            check_transition(record.state, changes["state"])
        self._store.update_task(self.run_id, task_id, **changes)
        return self._apply(task_id, changes)

    def give_up(self, task_id: str, state: TaskState, reason: str) -> TaskRecord:
        """End a task that will not (or no longer) run an attempt in this invocation."""
        return self.set_task(task_id, state=state, reason=reason)

    def fail_task(
        self, task_id: str, reason: str, now: float, state: TaskState = TaskState.FAILED
    ) -> tuple[TaskRecord, bool]:
        """End a task whose run raised something unexpected: its open attempts end with
        ``reason`` and the task moves to ``state`` (failed, or not_run for one that never
        started) with it, in one transaction. A task already in a final state keeps it.
        Returns the record and whether the change was persisted.

        The one exception to "persisted before applied": when the store itself cannot be written
        (a full disk), the change is applied in memory all the same, so that the task's
        dependants and its wave move on; the run's record then ends the way a crash's does
        (the next run repairs it)."""
        record = self._records[task_id]
        if record.state.finished:
            return record, True
        changes: dict[str, Any] = {"state": state, "reason": reason, "ended_at": now}
        check_transition(record.state, state)
        try:
            with self._store.batch():
                for attempt in self._store.open_attempts(self.run_id):
                    if attempt.task_id == task_id:
                        self._store.update_attempt(
                            self.run_id, task_id, attempt.number, ended_at=now, reason=reason
                        )
                self._store.update_task(self.run_id, task_id, **changes)
            persisted = True
        except StateError:
            persisted = False
        return self._apply(task_id, changes), persisted

    async def begin_attempt(self, attempt: AttemptRecord, started_at: float) -> TaskRecord:
        """Record a new attempt (its key before its process exists: a crash right after the
        launch still leaves enough to find it) and move its task to running, in one transaction.

        This and the attempt's end (``end_attempt``) are awaited: the loop goes on with the
        other attempts while the store's committer writes (``supervisor.state.committer``);
        the change is applied here once committed."""
        return await self._begin(attempt, started_at, None)

    async def begin_attempt_after(
        self, attempt: AttemptRecord, started_at: float, make: Callable[[], T], discard: Callable[[T], None]
    ) -> T:
        """``make()`` (an attempt's files), then ``begin_attempt``, in one hop: ``make`` runs on
        the store's writing thread, once, within the transaction that records the attempt, so
        what it makes exists before the record does, and the loop waits for one thread instead
        of two in turn (measured: 2.5 ms less per quick attempt, the files thread's hand-off).
        What ``make`` raises fails the beginning; what it made is ``discard``-ed if the record
        cannot be written."""
        made: list[T] = []

        def before() -> None:
            if not made:  # a transaction retried on its own runs its jobs again
                made.append(make())

        try:
            await self._begin(attempt, started_at, before)
        except BaseException:
            if made:
                discard(made[0])
            raise
        return made[0]

    async def _begin(
        self, attempt: AttemptRecord, started_at: float, before: Callable[[], None] | None
    ) -> TaskRecord:
        record = self._records[attempt.task_id]
        check_transition(record.state, TaskState.RUNNING)
        changes: dict[str, Any] = {
            "state": TaskState.RUNNING,
            "attempts": attempt.number,
            "reason": None,
            "started_at": record.started_at or started_at,
        }
        await self._store.add_attempt_async(attempt, before=before, **changes)
        return self._apply(attempt.task_id, changes)

    def attempt_running(self, task_id: str, number: int, ref: str, pid: int | None) -> None:
        """The attempt exists where it runs: its executor reference (and a pid for display).

        Asked, not waited for: nothing the engine does depends on it (recovery finds a crashed
        run's processes by their cookie too). It is asked ``REF_DELAY`` seconds later, and
        committed within moments after that: an attempt that ends sooner writes it with its end,
        in the same transaction (most quick attempts: a third fewer writes). Should it fail (a
        full disk), ``end_attempt`` raises its error."""
        key = (task_id, number)
        columns = {"ref": ref, "pid": pid}
        timer = asyncio.get_running_loop().call_later(REF_DELAY, self._write_ref, key)
        self._refs[key] = _LaterRef(columns, timer)

    def _write_ref(self, key: tuple[str, int]) -> None:
        later = self._refs.get(key)
        if not isinstance(later, _LaterRef):
            return
        written = self._store.update_attempt_soon(self.run_id, key[0], key[1], **later.columns)
        future = asyncio.ensure_future(written)
        future.add_done_callback(_looked_at)  # a run that crashes before the end raises no warning
        self._refs[key] = future

    def heartbeat(self, task_id: str, number: int, **sample: Any) -> None:
        """A liveness sample (CPU, RSS, processes, last output) or a live note of an attempt."""
        self._store.update_attempt(self.run_id, task_id, number, **sample)

    async def end_attempt(
        self, task_id: str, number: int, attempt_changes: Mapping[str, Any], task_changes: Mapping[str, Any]
    ) -> TaskRecord:
        """End attempt ``number`` and move its task on (to its next state), atomically."""
        record = self._records[task_id]
        if "state" in task_changes:
            check_transition(record.state, task_changes["state"])
        ref = self._refs.pop((task_id, number), None)
        if isinstance(ref, _LaterRef):  # not asked yet: written with the end
            ref.timer.cancel()
            attempt_changes = {**ref.columns, **attempt_changes}
        elif ref is not None:
            if not ref.done():
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({ref})
            ref.result()  # committed long since, as a rule; raises what failed it
        key = {"run_id": self.run_id, "task_id": task_id, "number": number}
        await self._store.finish_attempt_async(key, attempt_changes, task_changes)
        cost = attempt_changes.get("cost_usd")
        if cost is not None:
            self.spent += cost
        return self._apply(task_id, dict(task_changes))

    # -- changing the run ------------------------------------------------------------------------

    def update_run(self, **changes: Any) -> RunRecord:
        """Persist a change of the run record, then apply it in memory."""
        self._store.update_run(self.run_id, **changes)
        self._run = replace(self._run, **changes)
        return self._run

    def abandon(self, now: float) -> None:
        """Repair a run whose supervisor died: its open attempts end ``interrupted``, its running
        tasks (and pending ones with attempts) become ``interrupted``, the other pending ones
        ``not_run``, the run ``interrupted`` -- in one transaction."""
        interrupted = Reason.INTERRUPTED.value
        applied: list[tuple[str, dict[str, Any]]] = []
        with self._store.batch():
            for attempt in self._store.open_attempts(self.run_id):
                self._store.update_attempt(
                    self.run_id,
                    attempt.task_id,
                    attempt.number,
                    ended_at=attempt.sampled_at or attempt.started_at or now,
                    reason=interrupted,
                )
            for record in list(self._records.values()):
                if record.state is TaskState.RUNNING or (
                    record.state is TaskState.PENDING and record.attempts
                ):
                    applied.append(
                        self._persist_task(record.task_id, state=TaskState.INTERRUPTED, reason=interrupted)
                    )
                elif record.state is TaskState.PENDING:
                    applied.append(
                        self._persist_task(record.task_id, state=TaskState.NOT_RUN, reason=interrupted)
                    )
            self._store.update_run(self.run_id, status=RunStatus.INTERRUPTED)
        for task_id, changes in applied:
            self._apply(task_id, changes)
        self._run = replace(self._run, status=RunStatus.INTERRUPTED)

    def reopen(self, tasks: Iterable[tuple[str, int, str]], added: Iterable[TaskRecord], **run: Any) -> None:
        """For ``--retry-failed``: every task ``(id, wave, wave name)`` of the plan that did not
        succeed goes back to pending (a conflict is resolved by hand and stays), tasks new in the
        plan are added, and the run is running again -- in one transaction."""
        applied: list[tuple[str, dict[str, Any]]] = []
        with self._store.batch():
            for task_id, wave, wave_name in tasks:
                record = self._records.get(task_id)
                if record is None or record.state in (TaskState.SUCCEEDED, TaskState.CONFLICT):
                    continue
                applied.append(
                    self._persist_task(
                        task_id, state=TaskState.PENDING, wave=wave, wave_name=wave_name, ended_at=None
                    )
                )
            new = list(added)
            if new:
                self._store.add_tasks(new)
            self._store.update_run(self.run_id, **run)
        for task_id, changes in applied:
            self._apply(task_id, changes)
        for record in new:
            self._records[record.task_id] = record
            self._finished[record.task_id] = anyio.Event()
        self._run = replace(self._run, **run)

    # -- the hand-off ---------------------------------------------------------------------------

    def record_publish(self, task_id: str, record: Mapping[str, Any]) -> TaskRecord:
        """The publish record of a task's branch (pushed, pull request); its state stays."""
        return self.set_task(task_id, publish=json.dumps(record))

    def record_integration_publish(self, record: Mapping[str, Any]) -> RunRecord:
        """The publish record of the run's integration branch."""
        return self.update_run(publish=json.dumps(record))

    def record_moved_refs(self, task_id: str, attempt: int, moved: Iterable[Mapping[str, Any]]) -> RunRecord:
        """Append refs that others moved while an attempt ran (``results.checks.moved_refs``)."""
        known = json.loads(self._run.moved_refs or "[]")
        known += [{**change, "task": task_id, "attempt": attempt} for change in moved]
        return self.update_run(moved_refs=json.dumps(known))

    def record_answer(self, task_id: str, number: int, text: str) -> AttemptRecord:
        """A person's answer to attempt ``number`` of a task that needs input (``pagent
        answer``): kept on that attempt, where the task's next attempt finds it. The task's
        state stays (``--retry-failed`` runs it again)."""
        self._store.update_attempt(self.run_id, task_id, number, answer=text)
        return next(a for a in self.attempts(task_id) if a.number == number)

    def record_notification(self, entry: Mapping[str, Any]) -> RunRecord:
        """Append one notification sent (its event, when, one result per target) to the run's."""
        sent = json.loads(self._run.notifications or "[]")
        sent.append(dict(entry))
        return self.update_run(notifications=json.dumps(sent))

    @classmethod
    def create(cls, store: Store, run: RunRecord, tasks: list[TaskRecord]) -> RunState:
        """Record a new run with all its task runs (one transaction) and return its state."""
        store.create_run(run, tasks)
        return cls(store, run)

    # -- helpers ---------------------------------------------------------------------------------

    def _persist_task(self, task_id: str, **changes: Any) -> tuple[str, dict[str, Any]]:
        """Check and write a change inside a batch; the caller applies it once committed."""
        record = self._records[task_id]
        if "state" in changes:
            check_transition(record.state, changes["state"])
        self._store.update_task(self.run_id, task_id, **changes)
        return task_id, changes

    def _apply(self, task_id: str, changes: Mapping[str, Any]) -> TaskRecord:
        record = self._records[task_id] = _replaced(self._records[task_id], changes)
        event = self._finished.get(task_id)
        if event is not None:
            if record.state.finished:
                event.set()
            elif event.is_set():  # reopened: dependants must wait for it again
                self._finished[task_id] = anyio.Event()
        return record


_TASK_FIELDS = frozenset(field.name for field in fields(TaskRecord))


def _replaced(record: TaskRecord, changes: Mapping[str, Any]) -> TaskRecord:
    """``dataclasses.replace(record, **changes)`` for the record every write of a task changes:
    a copy with the changed fields set, without ``replace``'s look at every field each time
    (``TaskRecord`` validates nothing in ``__init__``); a name that is no field raises as there."""
    if not changes.keys() <= _TASK_FIELDS:
        raise TypeError(f"TaskRecord has no field {sorted(changes.keys() - _TASK_FIELDS)}")
    new = copy.copy(record)
    for name, value in changes.items():
        object.__setattr__(new, name, value)
    return new


class _LaterRef(NamedTuple):
    """An attempt's reference columns, to be written when ``timer`` fires (``attempt_running``)."""

    columns: dict[str, Any]
    timer: asyncio.TimerHandle


def _looked_at(future: asyncio.Future[None]) -> None:
    """Mark a write's failure as seen (``end_attempt`` still raises it when it awaits it)."""
    if not future.cancelled():
        future.exception()
