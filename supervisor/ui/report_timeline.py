"""The report's timeline: one row per task, one bar per attempt coloured by its outcome, wave
boundaries marked, on a time axis with readable ticks."""

from __future__ import annotations

from typing import Any

from supervisor.ui.report_format import _duration, _e, _elapsed, _money, _num, _open_end, _outcome

# Tick spacings for the time axis, in seconds: the first that gives at most ~8 ticks wins.
_TICK_STEPS = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400]


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
