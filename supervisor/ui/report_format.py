"""The report's pieces shared by its sections: the inline CSS, the colour of each state and
outcome, and escaping and formatting of values that came from the run view (some written by
agents: everything is escaped)."""

from __future__ import annotations

import html
import os
import time
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeGuard

from supervisor.reasons import Reason
from supervisor.state.records import RunStatus, TaskState

# Attempt reasons that mean "stopped from outside", as opposed to "the work failed".
_WARN_REASONS = frozenset({Reason.INTERRUPTED, Reason.STALLED, Reason.TIMEOUT})
# The badge colour of every task state and run status a view can show.
_STATE_CLASS: dict[str, str] = {
    TaskState.SUCCEEDED: "ok",
    TaskState.FAILED: "fail",
    TaskState.INTERRUPTED: "warn",
    TaskState.RUNNING: "run",
    TaskState.PENDING: "idle",
    TaskState.NOT_RUN: "idle",
    TaskState.CONFLICT: "fail",
    RunStatus.ABANDONED: "warn",
}
assert {*TaskState, *RunStatus} <= _STATE_CLASS.keys()

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
    if reason == Reason.OK:
        return "ok"
    if Reason.of(reason) in _WARN_REASONS:
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
    # os.path alone (relpath makes both paths absolute itself): this runs once per task, and
    # pathlib's objects cost a 1000-task report 6 ms of its 34.
    try:
        relative = os.path.relpath(str(log), report_dir)
    except ValueError:  # another drive on Windows: no relative path exists
        return Path(str(log)).absolute().as_uri()
    return urllib.parse.quote(relative.replace(os.sep, "/"), safe="/")


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
