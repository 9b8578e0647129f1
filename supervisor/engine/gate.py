"""What lets an attempt start: a free slot, capacity where it runs, money left, its kind not
stopped, its agent not rate-limited.

``LaunchGate`` is shared by every task run of an invocation. ``capacity`` waits for the executor
to report capacity (memory, say: GNU parallel's ``--memfree``; the run says once that it waits).
``slot`` waits until the attempt's rate-limit gate admits it, then for one of the plan's ``jobs``
slots; waiting task runs get slots in the order the runner ranked them (``rank``: longest
expected first, ``supervisor.engine.order``), first come first served among equals.
``blocked`` says why no attempt of an agent kind may start at all now: the run's spend reached
``max_cost_usd``, or the kind was stopped because every further attempt would fail the same way
(authentication, billing, a usage limit beyond ``max_wait``). ``Stop`` is the invocation's stop
request, with a helper to wait for something unless a stop comes first.

**Rate-limit gates.** Every agent has one (agents that name one ``account`` share it). An
attempt that ends rate-limited (or with a usage limit that resets within ``max_wait``) closes
its gate for the delay the policy gives (``supervisor.engine.policy.gate_delay``): no new
attempt through that gate starts meanwhile; attempts already running go on. When the delay has
passed, exactly one attempt starts -- the probe -- and the others wait for its end: a success
reopens the gate, another rate limit closes it again for the next, doubled delay, any other end
hands the probe to the next waiting attempt. A rate limit of an attempt that was already running
when the gate closed only makes the closure longer, never doubles it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from functools import partial
from typing import Any, TypeVar

import anyio

from supervisor.engine import events
from supervisor.engine.clock import Clock
from supervisor.engine.slots import Slots
from supervisor.plan.units import format_duration
from supervisor.reasons import Reason
from supervisor.seam import Executor

T = TypeVar("T")


class Stop:
    """The invocation's stop request (SIGINT/SIGTERM): start nothing new, stop what runs.

    The awaits it guards (``unless``, ``before``) run in the caller's own task inside a cancel
    scope the request cancels (at once, or with a deadline ``grace`` later): no helper task
    watches for the request, which an attempt would otherwise pay for at each of them.
    """

    def __init__(self) -> None:
        self._event = anyio.Event()
        self._guarded: dict[anyio.CancelScope, float] = {}  # scope -> grace after a request
        self._callbacks: dict[object, Callable[[], object]] = {}

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def request(self) -> None:
        first = not self._event.is_set()
        self._event.set()
        if first:
            for callback in list(self._callbacks.values()):
                callback()
        if not self._guarded:
            return
        now = anyio.current_time() if any(self._guarded.values()) else 0.0
        for scope, grace in list(self._guarded.items()):
            if grace <= 0:
                scope.cancel()
            else:
                scope.deadline = min(scope.deadline, now + grace)

    async def wait(self) -> None:
        await self._event.wait()

    @contextmanager
    def on_request(self, callback: Callable[[], object]) -> Iterator[None]:
        """Call ``callback`` (in the requesting task, so it must not block) when a stop is
        requested while the block runs -- at once if one was already. Cheaper than a task that
        waits for the request (an attempt would start one)."""
        if self.requested:
            callback()
        key = object()
        self._callbacks[key] = callback
        try:
            yield
        finally:
            del self._callbacks[key]

    async def _guard(
        self, grace: float, call: Callable[..., Awaitable[T]], *args: Any
    ) -> tuple[bool, T | None]:
        """``(True, await call(*args))``, or ``(False, None)`` when a stop (after ``grace``)
        cancelled it."""
        scope = anyio.CancelScope()
        if self.requested:
            scope.deadline = anyio.current_time() + grace
        self._guarded[scope] = grace
        try:
            with scope:
                return True, await call(*args)
        finally:
            del self._guarded[scope]
        return False, None

    async def unless(self, wait: Callable[..., Awaitable[Any]], *args: Any) -> bool:
        """Await ``wait(*args)`` unless a stop is requested first; False if it was."""
        if self.requested:
            return False
        await self._guard(0.0, wait, *args)
        return not self.requested

    async def before(self, call: Callable[..., Awaitable[T]], *args: Any, grace: float = 0.0) -> T | None:
        """``await call(*args)``, cancelled ``grace`` seconds after a stop is requested (at once
        by default); its result, or ``None`` if the stop came first. What ``call`` raises is
        raised as it is. A workspace call of the executor is cancellable this way: its git dies
        with the await."""
        if self.requested and grace <= 0:
            return None
        return (await self._guard(grace, call, *args))[1]


class Ticket:
    """One attempt a rate-limit gate admitted (``probe``: the one attempt after a closure);
    ``ended`` reports how it ended. Unreported, it changes nothing but hands a probe on."""

    def __init__(self, gate: _RateGate, probe: bool) -> None:
        self._gate = gate
        self.probe = probe
        self._done = False

    @property
    def closure(self) -> int:
        """Which closure in a row this attempt's rate limit would be: 1 when the gate is open,
        one more than before for a failed probe, the current one for an attempt that was
        running when the gate closed (its rate limit is the same storm)."""
        gate = self._gate
        return gate.closures + 1 if self.probe or gate.until is None else max(1, gate.closures)

    def ended(self, succeeded: bool, close_for: float | None) -> None:
        """The attempt ended: ``close_for`` seconds of closure when it was rate-limited (the
        policy's delay), else ``None``."""
        if not self._done:
            self._done = True
            self._gate.ended(self, succeeded, close_for)


class _RateGate:
    """One agent's (or account's) rate-limit gate; see the module docstring."""

    def __init__(self, name: str, clock: Clock, emit: Callable[[events.Event], None]) -> None:
        self.name = name
        self._clock = clock
        self._emit = emit
        self.until: float | None = None  # monotonic time it may probe again; None: open
        self.probing = False
        self.closures = 0  # closures in a row since it was last open
        self._changed = anyio.Event()

    def admit(self) -> Ticket | None:
        """A ticket if an attempt may start through this gate now, else ``None``."""
        if self.until is None:
            return Ticket(self, probe=False)
        if self.probing or self._clock.monotonic() < self.until:
            return None
        self.probing = True
        return Ticket(self, probe=True)

    def closed_for(self) -> float:
        """Seconds until it may probe again (0 when open or due)."""
        return 0.0 if self.until is None else max(0.0, self.until - self._clock.monotonic())

    async def wait(self, stop: Stop) -> None:
        """Return once ``admit`` could give a ticket, or a stop was requested."""
        while not stop.requested and self.until is not None:
            left = None if self.probing else self.until - self._clock.monotonic()
            if left is not None and left <= 0:
                return
            changed = self._changed
            async with anyio.create_task_group() as tg:

                async def wake(wait: Callable[[], Awaitable[Any]]) -> None:
                    await wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(wake, changed.wait)
                tg.start_soon(wake, stop.wait)
                if left is not None:
                    tg.start_soon(wake, partial(self._clock.sleep, left))

    def ended(self, ticket: Ticket, succeeded: bool, close_for: float | None) -> None:
        if close_for is not None:
            closing = ticket.probe or self.until is None
            self.closures = ticket.closure
            until = self._clock.monotonic() + close_for
            self.until = until if self.until is None else max(self.until, until)
            if closing:
                self._emit(
                    events.Notice(
                        f"{self.name} is rate-limited: no new attempt for {format_duration(close_for)}, "
                        "then one attempt probes"
                    )
                )
        elif succeeded and ticket.probe:
            self.until, self.closures = None, 0
            self._emit(events.Notice(f"{self.name}: the probe succeeded; attempts start again"))
        if ticket.probe:
            self.probing = False
        elif close_for is None:
            return  # an ordinary attempt that ended well or not rate-limited: nothing changed
        self._changed.set()
        self._changed = anyio.Event()


class LaunchGate:
    """Slots, capacity, budget, stopped kinds and rate-limit gates (see the module docstring)."""

    def __init__(
        self,
        jobs: int,
        executor: Executor,
        clock: Clock,
        emit: Callable[[events.Event], None],
        *,
        max_cost: float | None,
        spent: Callable[[], float],
        poll: float = 2.0,
        stop: Stop | None = None,
        gates: Mapping[str, str] | None = None,
    ) -> None:
        self._slots = Slots(jobs)
        self._executor = executor
        self._clock = clock
        self._emit = emit
        self._max_cost = max_cost
        self._spent = spent
        self._poll = poll
        self._stop = stop or Stop()
        self._gate_names = dict(gates or {})  # agent name -> its gate's name (AgentSpec.gate)
        self._gates: dict[str, _RateGate] = {}
        self._ranks: dict[str, float] = {}
        self._waiting = False
        self._over_budget = False
        self.stopped_kinds: dict[str, str] = {}

    def rank(self, ranks: Mapping[str, float]) -> None:
        """The order in which waiting task runs get slots: lowest rank first (unranked: 0)."""
        self._ranks = dict(ranks)

    def rate_gate(self, agent: str) -> _RateGate:
        """The rate-limit gate of agent ``agent`` (shared with the agents of its account)."""
        name = self._gate_names.get(agent, f"agent {agent}")
        gate = self._gates.get(name)
        if gate is None:
            gate = self._gates[name] = _RateGate(name, self._clock, self._emit)
        return gate

    async def capacity(self, memory: int, task_id: str) -> None:
        """Wait until the executor can take an attempt needing ``memory`` bytes free."""
        while (problem := self._executor.capacity_problem(memory)) is not None:
            if not self._waiting:
                self._waiting = True
                self._emit(events.Notice(problem, task_id))
            await self._clock.sleep(self._poll)
        self._waiting = False

    @asynccontextmanager
    async def slot(self, task_id: str = "", agent: str = "") -> AsyncIterator[Ticket]:
        """Hold one of the plan's ``jobs`` slots for an attempt of ``task_id`` by ``agent``, once
        its rate-limit gate admits it (at once after a stop request: nothing starts then)."""
        gate = self.rate_gate(agent)
        rank = self._ranks.get(task_id, 0.0)
        while True:
            await gate.wait(self._stop)
            await self._slots.acquire(rank)
            ticket = gate.admit() or (Ticket(gate, probe=False) if self._stop.requested else None)
            if ticket is not None:
                break
            self._slots.release()  # the gate closed while it waited for the slot
        try:
            yield ticket
        finally:
            ticket.ended(False, None)  # a no-op once reported
            self._slots.release()

    def blocked(self, kind: str) -> str | None:
        """Why no new attempt of agent kind ``kind`` may start now, or ``None``."""
        if self._max_cost is not None and (spent := self._spent()) >= self._max_cost:
            if not self._over_budget:  # said once, when the first task is held back
                self._over_budget = True
                message = (
                    f"max_cost_usd = {self._max_cost:g} reached (${spent:.2f} spent); "
                    "no further task was started"
                )
                self._emit(events.Notice(message))
                self._emit(events.StoppedEarly(Reason.MAX_COST.value, message))
            return Reason.MAX_COST.value
        return self.stopped_kinds.get(kind)

    def stop_kind(self, kind: str, reason: str) -> bool:
        """Start no further attempt of ``kind``; True if it was not stopped yet."""
        if kind in self.stopped_kinds:
            return False
        self.stopped_kinds[kind] = reason
        return True
