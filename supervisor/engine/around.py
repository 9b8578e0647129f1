"""What an attempt does around its agent: the workspace's hooks before it, the verdicts on what
it ran with after it, and which session a retry continues.

- ``before_agent``: the ``setup`` hooks while they have not succeeded in this workspace (the
  task's ``set_up_at`` is cleared when the workspace is created anew), then ``before_attempt``
  (``supervisor.engine.hooks``); the reason of the first that failed, else ``None``.
- ``after_agent``: an MCP server that did not start fails an attempt of a task with ``mcp =
  "required"`` (``mcp-failed``); then the structured result is judged
  (``supervisor.results.structured``), which may make changes optional (``nothing_to_do``).
- ``new_session``: the session id pagent chooses for an attempt (kinds with ``session_args``);
  ``settle_session``: what the attempt's record keeps of it at the end -- the agent's own report,
  or, when the agent ran and reported none, the chosen id marked ``session_unconfirmed``; and
  ``resumable``: the latest attempt, carrying the latest session its agent confirmed (a session
  that may not exist is never resumed).
"""

from __future__ import annotations

import functools
import json
import uuid
from dataclasses import replace
from typing import Any

from supervisor.agents.base import AgentKind
from supervisor.engine.attempt import AttemptResult
from supervisor.engine.clock import Clock
from supervisor.engine.gate import Stop
from supervisor.engine.hooks import run_hooks
from supervisor.engine.logfile import LogFile
from supervisor.engine.runstate import RunState
from supervisor.plan.model import Task, TaskSettings
from supervisor.reasons import Reason
from supervisor.results.structured import judge_result
from supervisor.seam import AttemptSpec, Executor
from supervisor.state.records import AttemptRecord

UNCONFIRMED = "session_unconfirmed"  # in an attempt's detail: its agent reported no session


async def before_agent(
    task: Task,
    *,
    state: RunState,
    spec: AttemptSpec,
    log: LogFile,
    executor: Executor,
    stop: Stop,
    clock: Clock,
) -> str | None:
    """Run the workspace's hooks for this attempt (see the module docstring)."""
    settings = task.settings
    hooks = functools.partial(
        run_hooks,
        spec=spec,
        timeout=settings.setup_timeout,
        grace=settings.kill_grace,
        log=log,
        executor=executor,
        stop=stop,
    )
    if settings.setup and state[task.id].set_up_at is None:
        if (failed := await hooks("setup", settings.setup)) is not None:
            return failed
        state.set_task(task.id, set_up_at=clock.time())
    if settings.before_attempt:
        return await hooks("before_attempt", settings.before_attempt)
    return None


def after_agent(
    settings: TaskSettings, result: AttemptResult, output: Any, metrics: dict[str, Any]
) -> tuple[AttemptResult, bool]:
    """The attempt after what its agent ran with (see the module docstring), and whether
    changes became optional. ``metrics`` gains the verdicts' detail (and loses an empty list of
    MCP errors)."""
    if result.exit is None:  # the agent never ran
        return result, False
    broken = metrics.get("mcp_server_errors")
    if not broken:
        metrics.pop("mcp_server_errors", None)
    elif settings.mcp == "required" and result.succeeded:
        names = ", ".join(f"{server.get('name')} ({server.get('status')})" for server in broken)
        result = replace(result, succeeded=False, reason=Reason.MCP_FAILED.detail(names))
    if settings.result_schema is None:
        return result, False
    verdict = judge_result(settings.result_schema, result.succeeded, result.reason, output)
    metrics.update(verdict.detail)
    return replace(result, succeeded=verdict.succeeded, reason=verdict.reason), verdict.changes_optional


_PROBE_SESSION = "00000000-0000-4000-8000-000000000000"  # a well-formed UUID, to ask a kind


def new_session(kind: AgentKind) -> str | None:
    """A new session id (a UUID) for an attempt of ``kind``, or ``None`` if the kind cannot be
    told one (it reports its own, if any)."""
    if kind.session_args(_PROBE_SESSION, None) is None:
        return None  # no UUID made for nothing (the kernel's random bytes cost a system call)
    return str(uuid.uuid4())


def settle_session(
    columns: dict[str, Any], metrics: dict[str, Any], *, ran: bool, chosen: str | None
) -> None:
    """Keep the ``chosen`` session in the attempt's record when its agent ran and reported none
    (``columns`` then leaves ``session_id`` alone; ``metrics`` says it is unconfirmed). An agent
    that never ran had no session: the record's is cleared."""
    if columns.get("session_id") is None and ran:
        del columns["session_id"]
        if chosen is not None:
            metrics[UNCONFIRMED] = True


def resumable(earlier: list[AttemptRecord]) -> AttemptRecord | None:
    """The latest attempt, with the session a retry may continue: its own, or, if its agent
    never confirmed it, the latest earlier one it did confirm (``None`` when there is none)."""
    if not earlier:
        return None
    latest = earlier[-1]
    for attempt in reversed(earlier):
        if attempt.session_id is not None and not json.loads(attempt.detail or "{}").get(UNCONFIRMED):
            return replace(latest, session_id=attempt.session_id)
    return replace(latest, session_id=None)
