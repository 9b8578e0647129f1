"""Pull requests for pushed branches: the body pagent writes, and the command that opens one.

The command is an argv template (``[publish] command``, by default the GitHub CLI's
``gh pr create --draft --head {branch} --base {base} --title {title} --body-file {body_file}``),
run without a shell, bounded in time, with gh's prompts and update check off. Its URL is the
last ``http(s)://`` URL it prints.

Idempotent: a recorded URL is reused as it is; otherwise the list command (``gh pr list --head
{branch} --state all --json url``) is asked first, and a pull request it names, open or closed,
is reused rather than opening a second one. When gh refuses because one already exists, the URL
in its message is recorded the same way. A failure is a ``PullRequestResult``, never an exception.
"""

from __future__ import annotations

import enum
import json
import os
import re
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.handoff.publish import mask_credentials
from supervisor.plan.model import PublishConfig
from supervisor.workspace.bounded import Finished, run_bounded

GH_ENV = {
    "GH_PROMPT_DISABLED": "1",
    "GH_NO_UPDATE_NOTIFIER": "1",
    "GH_SPINNER_DISABLED": "1",
    "NO_COLOR": "1",
    "GIT_TERMINAL_PROMPT": "0",
}
_URL = re.compile(r"https?://[^\s\"'<>]+")
_PROMPT_LINES = 15
_TITLE_LENGTH = 72


class PullRequestStatus(enum.StrEnum):
    """How asking for a pull request ended."""

    CREATED = "created"
    EXISTING = "existing"  # recorded earlier, listed by the list command, or named by gh's refusal
    ERROR = "error"


@dataclass(frozen=True)
class PullRequestResult:
    """The pull request of one branch; ``url`` is ``None`` only on error (``detail`` says why)."""

    branch: str
    base: str
    status: PullRequestStatus
    url: str | None = None
    draft: bool = True
    detail: str | None = None
    at: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, as ``publish.pull_request`` in a task's status view."""
        return {
            "branch": self.branch,
            "base": self.base,
            "status": self.status.value,
            "url": self.url,
            "draft": self.draft,
            "detail": self.detail,
            "at": round(self.at, 3),
        }


def open_pull_request(
    repo: Path,
    config: PublishConfig,
    *,
    branch: str,
    base: str,
    title: str,
    body: str,
    body_file: Path,
    recorded: str | None = None,
    plan_dir: Path | None = None,
) -> PullRequestResult:
    """Make sure ``branch`` has one pull request into ``base``: reuse ``recorded`` or one the list
    command names, else write ``body`` to ``body_file`` and run the create command in ``repo``.
    Each command is bounded by ``config.timeout``. Never raises."""
    draft = config.pull_request != "ready"
    start = PullRequestResult(branch, base, PullRequestStatus.EXISTING, recorded, draft, at=time.time())
    if recorded:
        return start
    values = {
        "branch": branch,
        "base": base,
        "title": title,
        "body_file": str(body_file),
        "remote": config.remote or "",
        "plan_dir": str(plan_dir or repo),
        "python": sys.executable,
    }
    found = _listed(start, config, values, repo)
    if found is not None:
        return found
    try:
        body_file.parent.mkdir(parents=True, exist_ok=True)
        body_file.write_text(body, encoding="utf-8")
    except OSError as exc:
        return _with(start, PullRequestStatus.ERROR, None, f"cannot write {body_file}: {exc.strerror}")
    return _create(start, config, values, repo)


def _listed(
    start: PullRequestResult, config: PublishConfig, values: Mapping[str, str], repo: Path
) -> PullRequestResult | None:
    """The pull request the list command names (or the error asking it), ``None`` for none."""
    if not config.list_command:
        return None
    listed = _run(config.list_command, values, repo, config.timeout)
    if not listed.ok:
        # Creating without knowing could open a second pull request: report instead.
        return _failed(start, listed, "listing pull requests", config.timeout)
    url = _listed_url(listed.stdout)
    return _with(start, PullRequestStatus.EXISTING, url) if url else None


def _create(
    start: PullRequestResult, config: PublishConfig, values: Mapping[str, str], repo: Path
) -> PullRequestResult:
    """Run the create command and read the URL it printed (or the one its refusal names)."""
    created = _run(config.command, values, repo, config.timeout)
    printed = _URL.findall(created.stdout)
    if created.ok and printed:
        return _with(start, PullRequestStatus.CREATED, printed[-1])
    refused = _URL.findall(created.stderr)
    if not created.ok and "already exists" in created.stderr and refused:
        return _with(start, PullRequestStatus.EXISTING, refused[-1])
    if created.ok:
        return _with(start, PullRequestStatus.ERROR, None, "the command printed no URL")
    return _failed(start, created, "creating the pull request", config.timeout)


def pull_request_title(task_id: str, prompt: str) -> str:
    """'fix-4767: Fix GetDbClient error handling': the task id and its prompt's first line."""
    first = next((line.strip().lstrip("#").strip() for line in prompt.splitlines() if line.strip()), "")
    title = f"{task_id}: {first}" if first else task_id
    return title if len(title) <= _TITLE_LENGTH else title[: _TITLE_LENGTH - 1] + "…"


def pull_request_body(task: Mapping[str, Any], prompt: str, *, base: str, run_id: str | None = None) -> str:
    """The body of a task's pull request (Markdown), from its status view and its own prompt:
    the prompt's first lines, diff stats, verify result, attempts, cost, the final message."""
    lines = prompt.strip().splitlines()
    quoted = [f"> {line}".rstrip() for line in lines[:_PROMPT_LINES]]
    if len(lines) > _PROMPT_LINES:
        quoted.append(f"> … ({len(lines) - _PROMPT_LINES} more lines)")
    detail = task.get("detail") or {}
    history = [str(h.get("reason")) for h in task.get("history") or []]
    rows = [
        ("task", f"`{task.get('id')}` (wave `{task.get('wave')}`)"),
        ("branch", f"`{task.get('branch')}` into `{base}`"),
        ("changes", _changes(task.get("diff"))),
        ("verify", _verify(detail.get("verify_exit"))),
        ("attempts", f"{task.get('attempts')}" + (f": {', '.join(history)}" if history else "")),
        ("cost", "—" if task.get("total_cost_usd") is None else f"${task['total_cost_usd']:.2f}"),
    ]
    if run_id:
        rows.append(("run", f"`{run_id}`"))
    parts = ["\n".join(quoted), "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)]
    final = str(detail.get("result_text") or "").strip()
    if final:
        parts.append(f"<details><summary>The agent's final message</summary>\n\n{final}\n\n</details>")
    parts.append("_Opened by pagent-run. The quote is the start of the task's prompt._")
    return "\n\n".join(part for part in parts if part) + "\n"


def integration_body(view: Mapping[str, Any], *, base: str) -> str:
    """The body of the integration branch's pull request: which task branches it merges."""
    integration = view.get("integration") or {}
    merges = integration.get("merges") or []
    rows = [f"| `{m.get('task')}` | `{m.get('branch')}` | {_merge_outcome(m)} |" for m in merges]
    head = f"Integration branch `{integration.get('branch')}` of run `{view.get('run_id')}`, into `{base}`."
    table = "| task | branch | |\n|---|---|---|\n" + "\n".join(rows) if rows else "No task branch was merged."
    return f"{head}\n\n{table}\n\n_Opened by pagent-run._\n"


def _run(template: tuple[str, ...], values: Mapping[str, str], repo: Path, timeout: float) -> Finished:
    """The command ``template`` with its placeholders filled, each argument on its own."""
    argv = [arg.format_map(values) for arg in template]
    return run_bounded(argv, cwd=repo, env={**os.environ, **GH_ENV}, timeout=timeout)


def _listed_url(output: str) -> str | None:
    """The first pull request URL in the list command's output (gh's JSON, or plain text)."""
    try:
        listed = json.loads(output)
    except ValueError:
        found = _URL.findall(output)
        return found[0] if found else None
    entries = listed if isinstance(listed, list) else [listed]
    urls = [e["url"] for e in entries if isinstance(e, dict) and isinstance(e.get("url"), str)]
    return urls[0] if urls else None


def _with(
    result: PullRequestResult, status: PullRequestStatus, url: str | None, detail: str | None = None
) -> PullRequestResult:
    """``result`` with a new outcome, stamped now."""
    return PullRequestResult(result.branch, result.base, status, url, result.draft, detail, time.time())


def _failed(result: PullRequestResult, done: Finished, doing: str, timeout: float) -> PullRequestResult:
    """An error result for a command that failed, timed out or could not start."""
    why = f"{doing}: no answer within {timeout:g} s (stopped)" if done.timed_out else done.problem(doing)
    return _with(result, PullRequestStatus.ERROR, None, mask_credentials(why)[:300])


def _merge_outcome(merge: Mapping[str, Any]) -> str:
    """'merged', or why not (the conflicting paths, or git's error)."""
    if merge.get("merged"):
        return "merged"
    return f"not merged: {', '.join(merge.get('conflicts') or []) or merge.get('error')}"


def _changes(diff: Any) -> str:
    """'2 commits, 3 files, +10 -2' from a task's ``diff`` view."""
    if not isinstance(diff, Mapping):
        return "—"
    counts = f"{diff.get('commits')} commits, {diff.get('files')} files"
    return f"{counts}, +{diff.get('insertions')} -{diff.get('deletions')}"


def _verify(code: Any) -> str:
    """The verify result as a word: only a succeeded task gets a pull request, so it passed if run."""
    if code is None:
        return "not configured"
    return "passed" if code == 0 else f"failed (exit {code})"
