"""The morning view: one self-contained ``report.html`` per run, built from its run view.

The page needs nothing but itself: CSS is inline, there is no script, no font, no image and
no network reference, and a Content-Security-Policy forbids loading anything, so the file can
be opened from disk, mailed or archived. Every string that comes from the view (task ids,
reasons, paths, branch names) is escaped; the run's agents wrote some of them.
"""

from __future__ import annotations

import html
import os
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

from supervisor.state.views import needs_person

# Attempt reasons that mean "stopped from outside", as opposed to "the work failed".
_WARN_REASONS = {"interrupted", "stalled", "timeout"}
_STATE_CLASS = {
    "succeeded": "ok",
    "failed": "fail",
    "interrupted": "warn",
    "running": "run",
    "pending": "idle",
    "not_run": "idle",
}
# Tick spacings for the time axis, in seconds: the first that gives at most ~8 ticks wins.
_TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]

_CSS = """
:root{--ok:#2e9d4f;--fail:#d33b3b;--warn:#e8891c;--run:#2f6fd6;--idle:#9aa0a6;--line:#e6e8eb;
--fg:#1f2328;--muted:#656d76;--label:16rem}
*{box-sizing:border-box}
body{margin:0;padding:1.25rem 1.5rem 3rem;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
color:var(--fg);background:#fff}
h1{font-size:1.35rem;margin:0 0 .6rem}h2{font-size:1.1rem;margin:2rem 0 .6rem}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
.meta{display:grid;grid-template-columns:max-content 1fr;gap:.15rem 1rem;margin:0}
.meta dt{color:var(--muted)}.meta dd{margin:0}
.badge{display:inline-block;padding:0 .45rem;border-radius:.6rem;font-size:12px;color:#fff;
background:var(--idle);white-space:nowrap}
.badge.ok{background:var(--ok)}.badge.fail{background:var(--fail)}.badge.warn{background:var(--warn)}
.badge.run{background:var(--run)}.counts .badge{margin-right:.3rem}
.note{margin:.6rem 0;padding:.4rem .7rem;border-left:3px solid var(--warn);background:#fff7ec}
.legend span{margin-right:1rem;color:var(--muted);font-size:12px}
.legend i{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.3rem;
vertical-align:-1px}
.tl{position:relative;font-size:12px;border:1px solid var(--line);border-radius:4px}
.tl-axis{position:sticky;top:0;z-index:2;display:flex;height:2.4rem;background:#fafbfc;
border-bottom:1px solid var(--line)}
.tl-axis .tl-label{color:var(--muted);align-self:center}
.tl-row{display:flex;height:18px;align-items:center;border-bottom:1px solid #f3f4f6}
.tl-row:hover{background:#f6f8fa}
.tl-label{width:var(--label);flex:none;padding:0 .6rem;overflow:hidden;text-overflow:ellipsis;
white-space:nowrap}
.tl-label a{color:inherit;text-decoration:none}.tl-label a:hover{text-decoration:underline}
.tl-track{position:relative;z-index:1;flex:1;height:100%}
.tl-rows .tl-track{height:12px}
.bar{position:absolute;top:0;height:12px;min-width:3px;border-radius:2px;background:var(--idle)}
.bar.ok{background:var(--ok)}.bar.fail{background:var(--fail)}.bar.warn{background:var(--warn)}
.bar.run{background:var(--run);background-image:repeating-linear-gradient(45deg,
transparent 0 4px,rgba(255,255,255,.35) 4px 8px)}
.tl-grid{position:absolute;top:0;bottom:0;left:var(--label);right:.6rem;pointer-events:none;z-index:0}
.tl-grid.waves{z-index:3}
.tl-rows{position:relative}
.tl-rows .tl-track,.tl-axis .tl-track{margin-right:.6rem}
.tick{position:absolute;top:0;bottom:0;border-left:1px solid #eef0f2}
.tick-label{position:absolute;bottom:.2rem;transform:translateX(-50%);color:var(--muted);
white-space:nowrap}
.tick-label.end{transform:translateX(-100%)}
.wave{position:absolute;top:0;bottom:0;border-left:2px dashed #444}
.wave-label{position:absolute;top:.15rem;padding:0 .3rem;background:#444;color:#fff;
border-radius:2px;white-space:nowrap;font-size:11px;max-width:12rem;overflow:hidden;
text-overflow:ellipsis}
table{border-collapse:collapse;width:100%;font-size:13px}
th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid var(--line);vertical-align:top}
th{background:#fafbfc;position:sticky;top:0;z-index:1}
td.num,th.num{text-align:right;white-space:nowrap}
.ins{color:var(--ok)}.del{color:var(--fail)}.muted{color:var(--muted)}
details summary{cursor:pointer;color:var(--muted)}
ul.paths{margin:.2rem 0 0;padding-left:1.1rem}
tr:target{background:#fff8c5}
"""


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
        _overlaps(overlaps, view.get("merge_order")),
        _integration(integration),
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


def _timeline(view: dict[str, Any], tasks: list[dict[str, Any]]) -> str:
    """One row per task, one bar per attempt, wave starts as dashed lines, time ticks on top."""
    attempts = [
        (i, a) for i, t in enumerate(tasks) for a in t.get("history") or [] if _num(a.get("started_at"))
    ]
    out = [
        '<section>\n<h2>Timeline</h2>\n<p class="legend">',
        '<span><i style="background:var(--ok)"></i>ok</span>',
        '<span><i style="background:var(--fail)"></i>failed</span>',
        '<span><i style="background:var(--warn)"></i>interrupted, stalled, timeout</span>',
        '<span><i style="background:var(--run)"></i>running</span>',
        '<span><i style="border:2px dashed #444;width:0"></i>wave start</span></p>\n',
    ]
    if not attempts:
        out.append('<p class="muted">No attempt has started yet.</p>\n</section>\n')
        return "".join(out)
    starts = [float(a["started_at"]) for _, a in attempts]
    ends = [float(a["ended_at"]) for _, a in attempts if _num(a.get("ended_at"))]
    run_start = float(view["started_at"]) if _num(view.get("started_at")) else min(starts)
    t0 = min(run_start, *starts)
    # A running run's duration is measured to "now", so running bars reach the right edge.
    t1 = run_start + float(view["duration"]) if _num(view.get("duration")) else t0
    t1 = max(t1, *starts, *ends)
    span = max(t1 - t0, 1e-6)

    def pct(t: float) -> str:
        return f"{max(0.0, min(100.0, (t - t0) / span * 100)):.3f}%"

    ticks: list[str] = []
    waves: list[str] = []
    labels: list[str] = []
    step = next((s for s in _TICK_STEPS if span / s <= 8), _TICK_STEPS[-1] * max(1, round(span / 86400 / 8)))
    tick = 0.0
    while tick <= span:
        at = pct(t0 + tick)
        edge = " end" if tick > span * 0.95 else ""  # keep the last label inside the box
        ticks.append(f'<div class=tick style="left:{at}"></div>')
        labels.append(f'<span class="tick-label{edge}" style="left:{at}">{_e(_elapsed(tick))}</span>')
        tick += step
    wave_start: dict[Any, tuple[float, str]] = {}
    for i, a in attempts:
        key = tasks[i].get("wave_index", tasks[i].get("wave"))
        name = str(tasks[i].get("wave") if tasks[i].get("wave") is not None else key)
        start = float(a["started_at"])
        if key not in wave_start or start < wave_start[key][0]:
            wave_start[key] = (start, name)
    for start, name in sorted(wave_start.values()):
        waves.append(f'<div class=wave style="left:{pct(start)}" title="wave {_e(name)} starts"></div>')
        labels.append(f'<span class=wave-label style="left:{pct(start)}">{_e(name)}</span>')
    out.append("<div class=tl>\n<div class=tl-axis><div class=tl-label>task</div><div class=tl-track>")
    out.extend(labels)
    # Tick lines go under the bars, wave lines over them.
    out.append("</div></div>\n<div class=tl-rows>\n<div class=tl-grid>")
    out.extend(ticks)
    out.append("</div><div class='tl-grid waves'>")
    out.extend(waves)
    out.append("</div>\n")
    for i, task in enumerate(tasks):
        bars: list[str] = []
        for a in task.get("history") or []:
            if not _num(a.get("started_at")):
                continue
            start = float(a["started_at"])
            outcome = _outcome(a, task)
            end = float(a["ended_at"]) if _num(a.get("ended_at")) else _open_end(task, t1)
            width = max(0.0, (end - start) / span * 100)
            tip = (
                f"{task.get('id')} #{a.get('attempt')}: {a.get('reason') or outcome} "
                f"({_duration(end - start)}{', ' + _money(a.get('cost_usd')) if a.get('cost_usd') else ''})"
            )
            bars.append(
                f'<span class="bar {outcome}" style="left:{pct(start)};width:{width:.3f}%" title="{_e(tip)}">'
                "</span>"
            )
        out.append(
            f'<div class=tl-row><div class=tl-label title="{_e(task.get("id"))}">'
            f'<a href="#t{i}">{_e(task.get("id"))}</a></div><div class=tl-track>{"".join(bars)}</div></div>\n'
        )
    out.append("</div>\n</div>\n</section>\n")
    return "".join(out)


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
        "<p class=muted>Widen <code>--allowedTools</code> / the permission mode, or answer in the "
        "prompt, then <code>pagent-run PLAN --retry-failed</code>.</p>"
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


def _e(value: Any) -> str:
    """Escaped text for element content and quoted attributes; ``None`` shows as a dash."""
    return "\u2014" if value is None else html.escape(str(value), quote=True)


def _num(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _outcome(attempt: dict[str, Any], task: dict[str, Any]) -> str:
    """The bar colour class of one attempt."""
    reason = attempt.get("reason")
    if attempt.get("ended_at") is None and not reason:
        # An unfinished attempt of a task that is no longer running was cut off by a crash.
        return "run" if task.get("state") == "running" else "warn"
    if reason == "ok":
        return "ok"
    if reason in _WARN_REASONS:
        return "warn"
    return "fail" if reason else "idle"


def _open_end(task: dict[str, Any], run_end: float) -> float:
    """Where an attempt without an end time is drawn to: the task's end, else the run's."""
    ended = task.get("ended_at")
    return float(ended) if _num(ended) and task.get("state") != "running" else run_end


def _paths(paths: Iterable[Any]) -> str:
    """A short path list inline, a long one folded."""
    items = [f"<li><code>{_e(p)}</code></li>" for p in paths]
    if not items:
        return ""
    if len(items) <= 3:
        return f"<ul class=paths>{''.join(items)}</ul>"
    return f"<details><summary>{len(items)} paths</summary><ul class=paths>{''.join(items)}</ul></details>"


def _log_href(log: Any, report_dir: Path) -> str | None:
    """A URL for ``log`` relative to the report's directory (a ``file:`` URI if none exists)."""
    if not log:
        return None
    target = Path(str(log)).absolute()
    try:
        relative = os.path.relpath(target, report_dir.absolute())
    except ValueError:  # another drive on Windows: no relative path exists
        return target.as_uri()
    return urllib.parse.quote(Path(relative).as_posix(), safe="/")


def _duration(seconds: Any) -> str:
    if not _num(seconds):
        return "\u2014"
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    whole = round(s)
    h, rest = divmod(whole, 3600)
    m, sec = divmod(rest, 60)
    return f"{h}h {m:02d}m" if h else f"{m}m {sec:02d}s"


def _elapsed(seconds: float) -> str:
    """An axis label: ``0``, ``+45s``, ``+5m``, ``+1h30m``."""
    whole = round(seconds)
    if whole == 0:
        return "0"
    h, rest = divmod(whole, 3600)
    m, s = divmod(rest, 60)
    text = (f"{h}h" if h else "") + (f"{m}m" if m else "") + (f"{s}s" if s and not h else "")
    return "+" + text


def _money(value: Any) -> str:
    return f"${float(value):.2f}" if _num(value) else "\u2014"


def _clock(ts: Any) -> str:
    if not _num(ts):
        return "\u2014"
    return time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(float(ts)))
