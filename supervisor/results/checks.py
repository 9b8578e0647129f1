"""After an attempt: whether what its workspace shows confirms the agent's verdict.

The executor looks at the workspace (``supervisor.seam.Executor.collect``): it removes the done
marker (saying whether it was there), commits what the agent left uncommitted (``auto_commit``,
default on, so nothing depends on the workspace surviving), pins the branch's commit under
``refs/pagent/``, lists the paths the attempt changed, the diff stats against the task's start
and the state of the task's branch. ``judge`` then applies, in this order:

1. The branch: the task's work must be on its branch -- the branch exists and HEAD is at its
   commit (not detached, not on another branch) -- else ``not-on-branch``; and the branch must
   still descend from the task's start commit, else ``history-rewritten``.
2. ``done_marker``: an attempt the agent judged successful counts only if the marker existed
   (it is never committed).
3. ``confine`` (with ``workdir``): changes of this attempt outside ``workdir`` fail it with
   reason ``outside-workdir``.
4. An attempt that changed nothing and whose final message is a question ends with
   ``needs-input`` (retrying cannot answer it).
5. ``require_changes``: a successful attempt that changed nothing fails with ``no-changes``.

``moved_refs`` compares the repository's branches and tags before and after an attempt: what
changed besides pagent's own refs is reported (a moved ``main``), never judged.

If the attempt still succeeded, the engine runs ``verify`` where the attempt ran; ``verified``
turns a non-zero exit into reason ``verify``. Each failure is an ordinary attempt failure,
retried by the policy like any other.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
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
    """Apply checks 1-5 of the module docstring to an attempt the agent judged ``succeeded``."""
    detail: dict[str, Any] = {}
    if facts.auto_committed:
        detail["auto_committed"] = True
    if facts.pinned:
        detail["pinned"] = list(facts.pinned)
    if not facts.on_branch:
        detail["off_branch"] = {"head": facts.head, "branch": facts.branch_tip}
        if succeeded:
            succeeded, reason = False, Reason.NOT_ON_BRANCH.value
    elif not facts.descends:
        detail["rewritten"] = {"branch": facts.branch_tip}
        if succeeded:
            succeeded, reason = False, Reason.HISTORY_REWRITTEN.value
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


def moved_refs(
    before: Mapping[str, str], after: Mapping[str, str], own: Collection[str]
) -> list[dict[str, str | None]]:
    """Every ref whose commit differs between the snapshots ``before`` and ``after`` (created:
    ``before`` is None; deleted: ``after`` is None), except the refs in ``own``; sorted."""
    changed = []
    for ref in sorted(set(before) | set(after)):
        old, new = before.get(ref), after.get(ref)
        if old != new and ref not in own:
            changed.append({"ref": ref, "before": old, "after": new})
    return changed


def moved_line(change: Mapping[str, str | None], task_id: str, attempt: int) -> str:
    """One line about a ref ``moved_refs`` found: what happened to it, and during which attempt."""
    before, after = change["before"], change["after"]
    if before is None:
        how = f"created at {str(after)[:12]}"
    elif after is None:
        how = f"deleted (was {before[:12]})"
    else:
        how = f"moved {before[:12]} -> {after[:12]}"
    return f"{change['ref']} {how} while {task_id} (attempt {attempt}) ran"


def verified(verdict: Verdict, code: int) -> Verdict:
    """The verdict once ``verify`` exited with ``code``."""
    detail = {**verdict.detail, "verify_exit": code}
    if code != 0:
        return Verdict(False, Reason.VERIFY.value, detail)
    return replace(verdict, detail=detail)
