"""Publishing a run's work per ``[publish]``: task branches, the integration branch, pull requests.

The runner calls ``task`` when a task has succeeded and ``integration`` after a wave merged into
the integration branch; ``pagent publish`` and ``--retry-failed`` call ``catch_up``. Each asks
``supervisor.handoff.branches`` (blocking and bounded, so in a worker thread), records what came
back through the run state and emits a ``Published`` event. Nothing here can fail a task or the
run: a rejected push or a missing pull request is a record and an event line, and the branch's
next publication (``pagent publish``) tries again, pushing only what changed and never opening a
second pull request.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import anyio

from supervisor.engine import events
from supervisor.engine.runstate import RunState
from supervisor.handoff.branches import complete, publish_branch
from supervisor.handoff.pullrequest import integration_body, pull_request_body, pull_request_title
from supervisor.plan.model import Plan
from supervisor.state.layout import Layout
from supervisor.state.records import TaskState
from supervisor.workspace.git import branch_of

INTEGRATION = "integration"  # the name of the integration branch's pull-request body file


class Publisher:
    """Publishes the branches of the run in ``state`` (see the module docstring)."""

    def __init__(
        self,
        plan: Plan,
        state: RunState,
        layout: Layout,
        repo: Path,
        emit: Callable[[events.Event], None],
    ) -> None:
        self._plan = plan
        self._config = plan.publish
        self._state = state
        self._layout = layout
        self._repo = repo
        self._emit = emit

    @property
    def active(self) -> bool:
        """Whether the plan publishes anything."""
        return self._config.enabled

    def _wants_pr(self, kind: str) -> bool:
        return self._config.pull_requests and self._config.pull_request_for == kind

    @functools.cached_property  # one git call, on first use
    def base(self) -> str | None:
        """The branch pull requests go into: ``[publish] base``, else the plan's ``base`` if it
        is a branch, else the branch checked out in the repository; ``None`` if there is none."""
        return self._config.base or branch_of(self._repo, self._plan.base)

    async def task(self, task_id: str) -> None:
        """Publish the branch of succeeded task ``task_id`` (and open its pull request)."""
        record = self._state[task_id]
        if not self.active or record.branch is None:
            return
        task = self._plan.task(task_id)
        base = self.base
        if task.stack and task.depends_on:  # a stacked task's pull request builds on its dependency's
            base = self._state[task.depends_on[0]].branch or base
        view = self._state.task_view(task_id)
        run_id = self._state.run_id
        body = functools.partial(pull_request_body, view, task.prompt, base=base or "?", run_id=run_id)
        result = await self._publish(
            record.branch,
            base=base,
            title=pull_request_title(task_id, task.prompt),
            body=body,
            name=task_id,
            pull_request=self._wants_pr("tasks"),
            recorded=json.loads(record.publish) if record.publish else None,
        )
        self._state.record_publish(task_id, result)
        self._announce(task_id, record.branch, result)

    async def integration(self) -> None:
        """Publish the run's integration branch, once something was merged into it."""
        run = self._state.run
        branch = run.integration_branch
        merges = json.loads(run.integration or "[]")
        if not self.active or branch is None or not any(m.get("merged") for m in merges):
            return
        base = self.base
        view = {"run_id": run.run_id, "integration": {"branch": branch, "merges": merges}}
        result = await self._publish(
            branch,
            base=base,
            title=f"{self._plan.name}: integration of run {run.run_id}",
            body=functools.partial(integration_body, view, base=base or "?"),
            name=INTEGRATION,
            pull_request=self._wants_pr("integration"),
            recorded=json.loads(run.publish) if run.publish else None,
        )
        self._state.record_integration_publish(result)
        self._announce(None, branch, result)

    async def catch_up(self, *, everything: bool = False) -> None:
        """Publish every succeeded task whose publication is incomplete (``everything``: every
        succeeded task; unchanged branches cost one ``ls-remote``), then the integration branch."""
        if not self.active:
            return
        wanted = self._wants_pr("tasks")
        for task_id, record in self._state.records.items():
            if record.state not in (TaskState.SUCCEEDED, TaskState.CONFLICT) or record.branch is None:
                continue
            if everything or not complete(json.loads(record.publish or "null"), wanted):
                await self.task(task_id)
        await self.integration()

    async def _publish(
        self,
        branch: str,
        *,
        base: str | None,
        title: str,
        body: Callable[[], str],
        name: str,
        pull_request: bool,
        recorded: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        """``publish_branch`` in a worker thread (it blocks on git and gh, bounded)."""
        call = functools.partial(
            publish_branch,
            self._repo,
            self._config,
            branch=branch,
            base=base,
            title=title,
            body=body,
            body_file=self._layout.pull_request_body(self._state.run_id, name),
            pull_request=pull_request,
            recorded=recorded,
            plan_dir=self._plan.plan_dir,
        )
        try:
            return await anyio.to_thread.run_sync(call)
        except Exception as exc:  # a bug here must not take the night's run down with it
            detail = f"internal error: {type(exc).__name__}: {exc}"[:300]
            pushed = {"remote": self._config.remote, "branch": branch, "status": "error", "ok": False}
            return {"pushed": {**pushed, "detail": detail}, "pull_request": None}

    def _announce(self, task_id: str | None, branch: str, result: Mapping[str, Any]) -> None:
        pushed = result.get("pushed") or {}
        pr = result.get("pull_request") or {}
        self._emit(
            events.Published(
                task_id=task_id,
                branch=branch,
                push=str(pushed.get("status")),
                detail=pushed.get("detail"),
                pull_request=pr.get("url"),
                pr_problem=pr.get("detail") if not pr.get("url") else None,
            )
        )
