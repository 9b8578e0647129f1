"""What the hand-off looks like to a person: published branches, pull requests, notifications.

Pure formatting of a run's view (``supervisor.state.views``), in small pieces the summary and
``pagent status`` (``tables``) and the report (``report``) each add where they list a run:
``publish_lines`` and ``notification_lines`` give text lines (nothing when the run published or
notified nothing), ``report_section`` gives one HTML section. Secrets never reach a view (targets
are recorded masked), so nothing here needs to mask.
"""

from __future__ import annotations

import html
from typing import Any

_OK_PUSH = {"pushed", "up-to-date"}


def _push_text(publish: dict[str, Any]) -> tuple[bool, str]:
    """Whether a branch's publication is fine, and one phrase saying how it went."""
    pushed = publish.get("pushed") or {}
    pr = publish.get("pull_request") or {}
    status = str(pushed.get("status") or "?")
    parts = [status if not pushed.get("detail") else f"{status}: {pushed['detail']}"]
    if pr.get("url"):
        parts.append(f"{pr['url']}" + (" (draft)" if pr.get("draft") else ""))
    elif pr:
        parts.append(f"no pull request: {pr.get('detail') or pr.get('status')}")
    ok = status in _OK_PUSH and (not pr or bool(pr.get("url")))
    return ok, ", ".join(parts)


def _published(view: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    """(name, branch, publish record) of every published branch of the run, tasks first."""
    rows = [
        (t["id"], t.get("branch") or "-", t["publish"]) for t in view.get("tasks") or [] if t.get("publish")
    ]
    integration = view.get("integration") or {}
    if integration.get("publish"):
        rows.append(("integration", str(integration.get("branch")), integration["publish"]))
    return rows


def publish_lines(view: dict[str, Any], *, problems_only: bool = False) -> list[str]:
    """'published:' and one line per branch ('  fix-1  pushed, https://.../pull/3 (draft)');
    with ``problems_only``, only the branches whose push or pull request failed."""
    rows = [(name, *_push_text(publish)) for name, _, publish in _published(view)]
    if problems_only:
        rows = [row for row in rows if not row[1]]
    if not rows:
        return []
    width = max(len(name) for name, _, _ in rows)
    head = "not published:" if problems_only else "published:"
    return [head, *(f"  {name:<{width}}  {text}" for name, _, text in rows)]


def notification_lines(view: dict[str, Any]) -> list[str]:
    """One line per notification target that failed ('notify failed: run-finished json://...:
    no answer within 10 s'); nothing when every notification arrived."""
    lines = []
    for sent in view.get("notifications") or []:
        for result in sent.get("results") or []:
            if not result.get("ok"):
                lines.append(
                    f"notify failed: {sent.get('event')} {result.get('target')}: {result.get('error')}"
                )
    return lines


def report_section(view: dict[str, Any]) -> str:
    """The report's "Hand-off" section: each published branch (push, pull request link) and
    each notification sent; empty when the run published and notified nothing."""
    published = _published(view)
    sent = view.get("notifications") or []
    if not published and not sent:
        return ""
    out = ["<section>\n<h2>Hand-off</h2>\n"]
    if published:
        out.append("<table>\n<thead><tr><th>branch</th><th>push</th><th>pull request</th></tr></thead>\n")
        for name, branch, publish in published:
            pushed = publish.get("pushed") or {}
            pr = publish.get("pull_request") or {}
            ok = pushed.get("status") in _OK_PUSH
            push = f'<span class="badge {"ok" if ok else "fail"}">{_e(pushed.get("status"))}</span>'
            if pushed.get("detail"):
                push += f" {_e(pushed['detail'])}"
            if pr.get("url"):
                url = str(pr["url"])
                link = (
                    f'<a href="{_e(url)}">{_e(url)}</a>'
                    if url.startswith(("https://", "http://"))
                    else _e(url)
                )
                cell = link + (' <span class="muted">draft</span>' if pr.get("draft") else "")
            elif pr:
                cell = f'<span class="badge fail">{_e(pr.get("status"))}</span> {_e(pr.get("detail"))}'
            else:
                cell = '<span class="muted">none</span>'
            out.append(
                f"<tr><td><code>{_e(name)}</code> <code>{_e(branch)}</code></td><td>{push}</td>"
                f"<td>{cell}</td></tr>\n"
            )
        out.append("</table>\n")
    if sent:
        out.append("<table>\n<thead><tr><th>notification</th><th>target</th><th>result</th></tr></thead>\n")
        for note in sent:
            for result in note.get("results") or []:
                badge = "ok" if result.get("ok") else "fail"
                said = "sent" if result.get("ok") else result.get("error")
                out.append(
                    f"<tr><td>{_e(note.get('event'))}</td><td><code>{_e(result.get('target'))}</code></td>"
                    f'<td><span class="badge {badge}">{_e(said)}</span></td></tr>\n'
                )
        out.append("</table>\n")
    out.append("</section>\n")
    return "".join(out)


def _e(value: Any) -> str:
    """Escaped text for element content and quoted attributes; ``None`` shows as a dash."""
    return "\u2014" if value is None else html.escape(str(value), quote=True)
