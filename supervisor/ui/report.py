"""The morning view: one self-contained ``report.html`` per run, built from its run view.

The page needs nothing but itself: CSS is inline, there is no script, no font, no image and
no network reference, and a Content-Security-Policy forbids loading anything, so the file can
be opened from disk, mailed or archived. Every string that comes from the view (task ids,
reasons, paths, branch names) is escaped; the run's agents wrote some of them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from supervisor.state.views import needs_person
from supervisor.ui.handoff import report_section
from supervisor.ui.report_format import (
    _CSS,
    _STATE_CLASS,
    _clock,
    _duration,
    _e,
    _log_href,
    _money,
    _paths,
)
from supervisor.ui.report_timeline import _timeline


def write_report(
    view: dict[str, Any],
    path: Path,
    overlaps: list[dict[str, Any]] | None = None,
    integration: dict[str, Any] | None = None,
) -> Path:
    """Write the run's ``report.html`` to ``path`` (atomically) and return ``path``.

    ``overlaps`` and ``integration`` override the view's keys of the same name; either may be
    absent everywhere. Log links are relative to ``path``'s directory.
    """
    text = render_report(view, path.parent, overlaps=overlaps, integration=integration)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
    return path


def render_report(
    view: dict[str, Any],
    report_dir: Path,
    overlaps: list[dict[str, Any]] | None = None,
    integration: dict[str, Any] | None = None,
) -> str:
    """The report as one HTML document; log links are relative to ``report_dir``."""
    overlaps = view.get("overlaps") if overlaps is None else overlaps
    integration = view.get("integration") if integration is None else integration
    tasks: list[dict[str, Any]] = list(view.get("tasks") or [])
    conflicted = {
        str(m.get("task")): m
        for m in (integration or {}).get("merges") or []
        if not m.get("merged") and m.get("conflicts")
    }
    title = f"pagent run {view.get('run_id', '?')}"
    parts = [
        "<!DOCTYPE html>\n<html lang=en>\n<head>\n<meta charset=utf-8>\n",
        # Nothing may load: no script, no font, no image, no network, even if escaping failed.
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'; "
        "style-src 'unsafe-inline'\">\n",
        '<meta name=viewport content="width=device-width,initial-scale=1">\n',
        f"<title>{_e(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n",
        _header(view, title),
        _needs_person(tasks),
        _timeline(view, tasks),
        _task_table(tasks, Path(report_dir), conflicted),
        _results(tasks),
        _overlaps(overlaps, view.get("merge_order")),
        _integration(integration),
        _moved_refs(view.get("moved_refs") or []),
        report_section(view),  # the hand-off (supervisor.ui.handoff)
        "</body>\n</html>\n",
    ]
    return "".join(parts)


def _header(view: dict[str, Any], title: str) -> str:
    status = str(view.get("status") or "?")
    counts = view.get("counts") or {}
    count_badges = "".join(
        f'<span class="badge {_STATE_CLASS.get(str(state), "idle")}">{_e(state)} {_e(n)}</span>'
        for state, n in counts.items()
    )
    rows = [
        ("plan", _e(view.get("plan"))),
        ("status", f'<span class="badge {_STATE_CLASS.get(status, "idle")}">{_e(status)}</span>'),
        ("started", _e(_clock(view.get("started_at")))),
        ("ended", "still running" if status == "running" else _e(_clock(view.get("ended_at")))),
        ("duration", _e(_duration(view.get("duration")))),
        (
            "tasks",
            f'<span class="counts">{count_badges}</span> <span class="muted">'
            f"{len(view.get('tasks') or [])} in all</span>",
        ),
        ("total cost", _e(_money(view.get("cost_usd")))),
    ]
    if view.get("base_commit"):
        rows.append(("base", f"<code>{_e(str(view['base_commit'])[:12])}</code>"))
    meta = "".join(f"<dt>{name}</dt><dd>{value}</dd>" for name, value in rows)
    note = f'<p class="note">{_e(view["note"])}</p>' if view.get("note") else ""
    return f"<header>\n<h1>{_e(title)}</h1>\n<dl class=meta>{meta}</dl>\n{note}</header>\n"


def _needs_person(tasks: list[dict[str, Any]]) -> str:
    """First thing in the report: tasks only a person can unblock, with what Claude was denied."""
    items = []
    for task in tasks:
        lines = needs_person(task)
        if lines:
            body = "".join(f"<li><code>{_e(line)}</code></li>" for line in lines)
            items.append(f"<li><b>{_e(task.get('id'))}</b> needs input<ul>{body}</ul></li>")
    if not items:
        return ""
    hint = (
        '<p class=muted>Answer with <code>pagent answer PLAN TASK "..."</code>, or widen '
        "<code>--allowedTools</code> / the permission mode, then "
        "<code>pagent-run PLAN --retry-failed</code>.</p>"
    )
    return f"<section>\n<h2>Needs a person</h2>\n{hint}<ul>{''.join(items)}</ul>\n</section>\n"


def _task_table(tasks: list[dict[str, Any]], report_dir: Path, conflicted: dict[str, Any]) -> str:
    head = (
        "<tr><th>task</th><th>wave</th><th>state</th><th>reason</th><th class=num>attempts</th>"
        "<th class=num>duration</th><th class=num>cost</th><th class=num>commits</th>"
        "<th class=num>files</th><th class=num>lines</th><th>paths</th><th>logs</th><th>branch</th></tr>"
    )
    rows: list[str] = []
    for i, task in enumerate(tasks):
        state = str(task.get("state") or "?")
        badges = f'<span class="badge {_STATE_CLASS.get(state, "idle")}">{_e(state)}</span>'
        if str(task.get("id")) in conflicted:
            badges += ' <span class="badge fail">conflict</span>'
        diff = task.get("diff") or None
        if diff:
            dirty = ' <span class="badge warn">uncommitted</span>' if diff.get("uncommitted") else ""
            diff_cells = (
                f"<td class=num>{_e(diff.get('commits'))}</td><td class=num>{_e(diff.get('files'))}</td>"
                f"<td class=num><span class=ins>+{_e(diff.get('insertions'))}</span> "
                f"<span class=del>\u2212{_e(diff.get('deletions'))}</span>{dirty}</td>"
                f"<td>{_paths(diff.get('paths') or [])}</td>"
            )
        else:
            diff_cells = '<td class="num muted" colspan=3>no diff</td><td></td>'
        logs = " ".join(
            f'<a href="{_e(href)}">#{_e(a.get("attempt"))}</a>'
            for a in task.get("history") or []
            if (href := _log_href(a.get("log"), report_dir))
        )
        if not logs and (href := _log_href(task.get("log"), report_dir)):
            logs = f'<a href="{_e(href)}">log</a>'
        cost = task.get("total_cost_usd", task.get("cost_usd"))
        rows.append(
            f'<tr id="t{i}"><td><code>{_e(task.get("id"))}</code></td><td>{_e(task.get("wave"))}</td>'
            f"<td>{badges}</td><td>{_e(task.get('reason'))}</td>"
            f"<td class=num>{_e(task.get('attempts'))}</td>"
            f"<td class=num>{_e(_duration(task.get('duration')))}</td><td class=num>{_e(_money(cost))}</td>"
            f"{diff_cells}<td>{logs or '<span class=muted>none</span>'}</td>"
            f"<td><code>{_e(task.get('branch'))}</code></td></tr>\n"
        )
    body = "".join(rows) or '<tr><td colspan=13 class="muted">This run has no tasks.</td></tr>'
    table = f"<table>\n<thead>{head}</thead>\n<tbody>\n{body}</tbody>\n</table>"
    return f"<section>\n<h2>Tasks</h2>\n{table}\n</section>\n"


def _results(tasks: list[dict[str, Any]]) -> str:
    """Every attempt's structured result (``result_schema``) and a person's answers to it."""
    rows = []
    for task in tasks:
        for attempt in task.get("history") or []:
            if attempt.get("result") is None and not attempt.get("answer"):
                continue
            result = attempt.get("result")
            shown = json.dumps(result, indent=1, ensure_ascii=False) if result is not None else ""
            answer = attempt.get("answer")
            rows.append(
                f"<tr><td><code>{_e(task.get('id'))}</code></td>"
                f"<td class=num>{_e(attempt.get('attempt'))}</td>"
                f"<td>{_e(attempt.get('reason'))}</td><td><pre>{_e(shown)}</pre></td>"
                f"<td>{_e(answer) if answer else '<span class=muted>-</span>'}</td></tr>\n"
            )
    if not rows:
        return ""
    head = "<tr><th>task</th><th class=num>attempt</th><th>reason</th><th>result</th><th>answered</th></tr>"
    table = f"<table>\n<thead>{head}</thead>\n<tbody>\n{''.join(rows)}</tbody>\n</table>"
    return f"<section>\n<h2>Results and answers</h2>\n{table}\n</section>\n"


def _overlaps(overlaps: list[dict[str, Any]] | None, order: list[str] | None) -> str:
    out = ["<section>\n<h2>Overlaps</h2>\n"]
    if not overlaps:
        out.append('<p class="muted">No two succeeded tasks changed the same path.</p>\n')
    else:
        out.append(
            "<table>\n<thead><tr><th>tasks</th><th class=num>paths</th><th>shared paths</th></tr></thead>\n"
        )
        for overlap in overlaps:
            pair = " \u2194 ".join(f"<code>{_e(t)}</code>" for t in overlap.get("tasks") or [])
            paths = overlap.get("paths") or []
            out.append(f"<tr><td>{pair}</td><td class=num>{len(paths)}</td><td>{_paths(paths)}</td></tr>\n")
        out.append("</table>\n")
    if order:
        listed = " \u2192 ".join(f"<code>{_e(t)}</code>" for t in order)
        out.append(f"<p>Suggested merge order (fewest overlaps first): {listed}</p>\n")
    out.append("</section>\n")
    return "".join(out)


def _integration(integration: dict[str, Any] | None) -> str:
    out = ["<section>\n<h2>Integration</h2>\n"]
    if not integration:
        out.append('<p class="muted">No integration branch for this run.</p>\n</section>\n')
        return "".join(out)
    out.append(f"<p>Branch <code>{_e(integration.get('branch'))}</code></p>\n")
    merges = integration.get("merges") or []
    if not merges:
        out.append('<p class="muted">Nothing was merged.</p>\n')
    else:
        out.append(
            "<table>\n<thead><tr><th>task</th><th>result</th><th>conflicting paths</th>"
            "<th>commit</th></tr></thead>\n"
        )
        for merge in merges:
            if merge.get("merged"):
                result = '<span class="badge ok">merged</span>'
            elif merge.get("conflicts"):
                result = '<span class="badge fail">conflict</span>'
            else:
                result = f'<span class="badge fail">not merged</span> {_e(merge.get("error") or "")}'
            commit = f"<code>{_e(str(merge['commit'])[:12])}</code>" if merge.get("commit") else ""
            out.append(
                f"<tr><td><code>{_e(merge.get('task'))}</code></td><td>{result}</td>"
                f"<td>{_paths(merge.get('conflicts') or [])}</td><td>{commit}</td></tr>\n"
            )
        out.append("</table>\n")
    out.append("</section>\n")
    return "".join(out)


def _moved_refs(moved: list[dict[str, Any]]) -> str:
    """Branches and tags others changed while attempts ran (nothing when none did)."""
    if not moved:
        return ""
    out = [
        "<section>\n<h2>Refs changed while agents ran</h2>\n"
        "<p>Branches and tags other than the run's own that changed during an attempt.</p>\n"
        "<table>\n<thead><tr><th>ref</th><th>before</th><th>after</th><th>during</th></tr></thead>\n"
    ]
    for change in moved:
        before, after = change.get("before"), change.get("after")
        out.append(
            f"<tr><td><code>{_e(change.get('ref'))}</code></td>"
            f"<td><code>{_e(str(before)[:12]) if before else 'created'}</code></td>"
            f"<td><code>{_e(str(after)[:12]) if after else 'deleted'}</code></td>"
            f"<td><code>{_e(change.get('task'))}</code>, attempt {_e(change.get('attempt'))}</td></tr>\n"
        )
    out.append("</table>\n</section>\n")
    return "".join(out)
