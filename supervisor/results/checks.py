"""After an attempt: whether what its workspace shows confirms the agent's verdict.

The executor looks at the workspace (``supervisor.seam.Executor.collect``): it removes the done
marker (saying whether it was there), commits what the agent left uncommitted (``auto_commit``,
default on, so nothing depends on the workspace surviving), lists the paths the attempt changed
and the diff stats against the task's start. ``judge`` then applies, in this order:

1. ``done_marker``: an attempt the agent judged successful counts only if the marker existed
   (it is never committed).
2. ``confine`` (with ``workdir``): changes of this attempt outside ``workdir`` fail it with
   reason ``outside-workdir``.
3. An attempt that changed nothing and whose final message is a question ends with
   ``needs-input`` (retrying cannot answer it).
4. ``require_changes``: a successful attempt that changed nothing fails with ``no-changes``.

If the attempt still succeeded, the engine runs ``verify`` where the attempt ran; ``verified``
turns a non-zero exit into reason ``verify``. Each failure is an ordinary attempt failure,
retried by the policy like any other.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from supervisor.plan.model import TaskSettings
from supervisor.reasons import Reason
from supervisor.seam import Facts


@dataclass(frozen=True)
class Verdict:
    """The attempt's outcome after the checks, with what they found."""

    succeeded: bool
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)


def judge(settings: TaskSettings, succeeded: bool, reason: str, facts: Facts, final_message: str) -> Verdict:
    """Apply checks 1-4 of the module docstring to an attempt the agent judged ``succeeded``."""
    detail: dict[str, Any] = {}
    if facts.auto_committed:
        detail["auto_committed"] = True
    if succeeded and settings.done_marker is not None and not facts.marker_found:
        succeeded, reason = False, Reason.NO_DONE_MARKER.value
    if settings.confine and settings.workdir:
        prefix = settings.workdir.rstrip("/") + "/"
        outside = [p for p in facts.changed if not p.startswith(prefix)]
        if outside:
            detail["outside_workdir"] = outside
            if succeeded:
                succeeded, reason = False, Reason.OUTSIDE_WORKDIR.value
    question = final_message.strip()
    if succeeded and not facts.changed and question.endswith("?"):
        # The agent answered with a question instead of doing the work: only a person can help.
        detail["asked"] = question[-500:]
        succeeded, reason = False, Reason.NEEDS_INPUT.value
    if succeeded and settings.require_changes and not facts.changed:
        succeeded, reason = False, Reason.NO_CHANGES.value
    return Verdict(succeeded, reason, detail)


def verified(verdict: Verdict, code: int) -> Verdict:
    """The verdict once ``verify`` exited with ``code``."""
    detail = {**verdict.detail, "verify_exit": code}
    if code != 0:
        return Verdict(False, Reason.VERIFY.value, detail)
    return replace(verdict, detail=detail)
