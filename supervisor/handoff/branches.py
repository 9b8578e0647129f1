"""One branch's whole publication: pushed to the remote, then (if wanted) its one pull request.

``publish_branch`` returns the record the engine keeps for the branch (``publish`` in a task's
status view, ``integration.publish`` for the integration branch):
``{"pushed": PushResult.to_dict(), "pull_request": PullRequestResult.to_dict() | None}``. The
record of an earlier publication is handed back in, so a recorded pull request is reused as it
is: asking twice never opens a second one. Blocking and bounded; never raises.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from supervisor.handoff.publish import push_branch
from supervisor.handoff.pullrequest import PullRequestResult, PullRequestStatus, open_pull_request
from supervisor.plan.model import PublishConfig


def publish_branch(
    repo: Path,
    config: PublishConfig,
    *,
    branch: str,
    base: str | None,
    title: str,
    body: Callable[[], str],
    body_file: Path,
    pull_request: bool,
    recorded: Mapping[str, Any] | None = None,
    plan_dir: Path | None = None,
) -> dict[str, Any]:
    """Push ``branch`` of ``repo`` to ``config.remote`` (fast-forward only, only if the remote
    lacks the commit) and, when ``pull_request``, make sure it has one pull request into
    ``base``. Returns the branch's publish record (see the module docstring)."""
    assert config.remote is not None, "publish_branch needs [publish] remote"
    pushed = push_branch(repo, config.remote, branch, timeout=config.timeout)
    earlier = recorded_pull_request(recorded)
    pr: dict[str, Any] | None = earlier
    if pull_request and not (earlier and earlier.get("url")):
        if not pushed.ok:
            pass  # nothing to open a pull request for; the push's detail says why
        elif base is None:
            why = "no branch to open it into: set [publish] base"
            pr = PullRequestResult(branch, "", PullRequestStatus.ERROR, None, detail=why).to_dict()
        else:
            pr = open_pull_request(
                repo,
                config,
                branch=branch,
                base=base,
                title=title,
                body=body(),
                body_file=body_file,
                plan_dir=plan_dir,
            ).to_dict()
    return {"pushed": pushed.to_dict(), "pull_request": pr}


def recorded_pull_request(record: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The pull request an earlier publish record names, or ``None``."""
    pr = (record or {}).get("pull_request")
    return dict(pr) if isinstance(pr, Mapping) else None


def complete(record: Mapping[str, Any] | None, pull_request: bool) -> bool:
    """Whether a publish record needs nothing more: pushed, and its pull request has a URL when
    one is wanted."""
    if not record:
        return False
    pushed = record.get("pushed") or {}
    pr = recorded_pull_request(record) or {}
    return bool(pushed.get("ok")) and (not pull_request or bool(pr.get("url")))
