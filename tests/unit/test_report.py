"""The run report: a self-contained, escaped HTML page built from a real run view."""

from __future__ import annotations

import html
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.state.records import AttemptRecord, RunRecord, RunStatus, TaskRecord, TaskState
from supervisor.state.store import Store
from supervisor.state.views import run_view
from supervisor.ui.report import render_report, write_report

RUN = "20261124-020000-ab12"
T0 = 1_790_000_000.0
EVIL = "<script>alert(1)</script>"
ODD_ID = 'w2 & <b>"odd"</b>'

OVERLAPS = [{"tasks": ["fix-1", ODD_ID], "paths": ["src/app.py", "src/<evil>.py"]}]
INTEGRATION = {
    "branch": "pagent/nightly",
    "merges": [
        {"task": "fix-1", "merged": True, "conflicts": []},
        {"task": ODD_ID, "merged": False, "conflicts": ["src/app.py"]},
    ],
}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store(tmp_path / ".pagent" / "state.db")
    yield opened
    opened.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """``<state>/runs/<run_id>``, where the report and its logs live."""
    return tmp_path / ".pagent" / "runs" / RUN


def attempt(run_dir: Path, task_id: str, number: int, start: float, **changes: Any) -> AttemptRecord:
    return AttemptRecord(
        run_id=RUN,
        task_id=task_id,
        number=number,
        started_at=T0 + start,
        log_path=str(run_dir / "logs" / f"{task_id}.{number}.log"),
        cookie=f"c:{task_id}:{number}",
        **changes,
    )


def make_view(store: Store, run_dir: Path) -> dict[str, Any]:
    """A two-wave run, still going: retried, failed with a hostile reason, running, never started."""
    tasks = [
        TaskRecord(
            RUN, "fix-1", 0, "first", TaskState.SUCCEEDED, 2, "pagent/p/fix-1", None, "ok", 0, T0, T0 + 900
        ),
        TaskRecord(
            RUN, "fix-2", 0, "first", TaskState.FAILED, 1, "pagent/p/fix-2", None, EVIL, 1, T0, T0 + 300
        ),
        TaskRecord(
            RUN, ODD_ID, 1, "second", TaskState.RUNNING, 1, "pagent/p/odd", None, None, None, T0 + 1000
        ),
        TaskRecord(RUN, "never", 1, "second"),
    ]
    run = RunRecord(RUN, "key", "nightly", "/plans/plan.toml", T0, RunStatus.RUNNING, base_commit="a" * 40)
    store.create_run(run, tasks)
    store.add_attempt(attempt(run_dir, "fix-1", 1, 0, ended_at=T0 + 600, reason="timeout", cost_usd=0.5))
    store.add_attempt(attempt(run_dir, "fix-1", 2, 610, ended_at=T0 + 900, reason="ok", cost_usd=0.25))
    store.add_attempt(attempt(run_dir, "fix-2", 1, 5, ended_at=T0 + 300, reason=EVIL, exit_code=1))
    store.add_attempt(attempt(run_dir, ODD_ID, 1, 1000))
    view = run_view(store, run, now=T0 + 1800)
    view["tasks"][0]["diff"] = {
        "commits": 2,
        "files": 2,
        "insertions": 17,
        "deletions": 3,
        "paths": ["src/app.py", "src/<evil>.py"],
        "uncommitted": False,
    }
    return view


@pytest.fixture
def view(store: Store, run_dir: Path) -> dict[str, Any]:
    return make_view(store, run_dir)


@pytest.fixture
def page(view: dict[str, Any], run_dir: Path) -> str:
    return write_report(view, run_dir / "report.html", OVERLAPS, INTEGRATION).read_text()


def test_report_shows_every_task_id(page: str, view: dict[str, Any]) -> None:
    """Every task id appears, escaped, in both the timeline and the table."""
    for task in view["tasks"]:
        assert page.count(html.escape(task["id"])) >= 2, task["id"]


def test_report_escapes_hostile_strings(page: str) -> None:
    """A reason, an id and a path full of markup are shown as text, never as markup."""
    assert EVIL not in page
    assert html.escape(EVIL) in page
    assert "<b>" not in page
    assert "<evil>" not in page
    assert "<script" not in page.lower()


def test_report_is_self_contained(page: str) -> None:
    """No network references of any kind, and a policy that forbids loading anything."""
    assert "http://" not in page
    assert "https://" not in page
    assert "//" not in re.sub(r"/\*.*?\*/", "", page).replace("://", "")  # no protocol-relative URLs
    assert "default-src 'none'" in page


def test_report_links_logs_relative_to_its_directory(page: str) -> None:
    """Each attempt's log is linked relatively, from runs/<id>/ to runs/<id>/logs/."""
    assert 'href="logs/fix-1.1.log"' in page
    assert 'href="logs/fix-1.2.log"' in page
    assert 'href="logs/fix-2.1.log"' in page
    assert f'href="logs/{html.escape("w2%20%26%20%3Cb%3E%22odd%22%3C/b%3E")}.1.log"' in page


def test_logs_elsewhere_get_a_relative_path_upwards(view: dict[str, Any], tmp_path: Path) -> None:
    """A report written elsewhere still reaches the logs through a relative path."""
    text = write_report(view, tmp_path / "out" / "report.html").read_text()
    assert f'href="../.pagent/runs/{RUN}/logs/fix-1.1.log"' in text


def test_timeline_colours_bars_by_outcome(page: str) -> None:
    """ok is green, a timeout orange, a failure red and the running attempt blue, one bar per attempt."""
    bars = re.findall(r'<span class="bar (\w+)"', page)
    assert bars == ["warn", "ok", "fail", "run"]


def test_timeline_positions_bars_from_the_run_start(page: str) -> None:
    """Bars are placed by time relative to the run start over the run's duration (here 1800 s)."""
    assert 'style="left:0.000%;width:33.333%"' in page  # fix-1 #1: 0..600 s
    assert 'style="left:55.556%;width:44.444%"' in page  # running since 1000 s, drawn to now


def test_timeline_marks_wave_starts(page: str) -> None:
    """A dashed line where each wave's first attempt started, labelled with the wave."""
    assert re.findall(r'<div class=wave style="left:([\d.]+)%"', page) == ["0.000", "55.556"]
    assert '<span class=wave-label style="left:55.556%">second</span>' in page


def test_table_shows_state_reason_duration_cost_and_diff(page: str) -> None:
    """The task table carries the diff stats, the summed cost, durations and the conflict mark."""
    row = page[page.index('<tr id="t0">') : page.index('<tr id="t1">')]
    assert "succeeded" in row
    assert "$0.75" in row
    assert "15m 00s" in row
    assert "+17" in row
    assert "\u22123" in row
    odd = page[page.index('<tr id="t2">') : page.index('<tr id="t3">')]
    assert "conflict" in odd
    assert "running" in odd


def test_overlaps_and_integration_sections(page: str) -> None:
    """Overlapping pairs with their paths, and each merge's outcome with conflicting paths."""
    overlaps = page[page.index("<h2>Overlaps</h2>") : page.index("<h2>Integration</h2>")]
    assert "src/app.py" in overlaps
    assert html.escape("src/<evil>.py") in overlaps
    integration = page[page.index("<h2>Integration</h2>") :]
    assert "pagent/nightly" in integration
    assert integration.count('class="badge ok">merged') == 1
    assert integration.count('class="badge fail">conflict') == 1


def test_overlaps_and_integration_can_come_inside_the_view(view: dict[str, Any], run_dir: Path) -> None:
    """The same sections render from the view's own keys, and a merge order is shown if present."""
    view = {**view, "overlaps": OVERLAPS, "integration": INTEGRATION, "merge_order": ["fix-1", ODD_ID]}
    text = render_report(view, run_dir)
    assert "Suggested merge order" in text
    assert "pagent/nightly" in text
    assert "src/app.py" in text.split("<h2>Overlaps</h2>")[1]


def test_empty_run_without_attempts_renders(store: Store, run_dir: Path) -> None:
    """A run with tasks but no attempt yet, and one with no tasks, both render sensibly."""
    run = RunRecord(RUN, "key", "nightly", "/plans/plan.toml", T0)
    store.create_run(run, [TaskRecord(RUN, "only", 0, "w")])
    text = render_report(run_view(store, run, now=T0), run_dir)
    assert "No attempt has started yet." in text
    assert "only" in text
    assert "No integration branch" in text
    bare = render_report({"run_id": "r", "tasks": []}, run_dir)
    assert "This run has no tasks." in bare


def test_write_report_replaces_the_file_atomically(view: dict[str, Any], run_dir: Path) -> None:
    """The report is written whole (no partial file left) and rewritten on the next call."""
    path = run_dir / "report.html"
    assert write_report(view, path) == path
    first = path.read_text()
    view["tasks"][0]["id"] = "renamed-task"
    write_report(view, path)
    assert "renamed-task" in path.read_text()
    assert path.read_text() != first
    assert sorted(p.name for p in run_dir.iterdir()) == ["report.html"]


def thousand_tasks(run_dir: Path) -> dict[str, Any]:
    tasks = []
    for i in range(1000):
        start = T0 + i * 3.0
        tasks.append(
            {
                "id": f"task-{i:04d}",
                "wave": f"w{i // 250}",
                "wave_index": i // 250,
                "state": "succeeded",
                "attempts": 1,
                "reason": "ok",
                "branch": f"pagent/big/task-{i:04d}",
                "duration": 60.0,
                "total_cost_usd": 0.01,
                "history": [
                    {
                        "attempt": 1,
                        "started_at": start,
                        "ended_at": start + 60,
                        "reason": "ok",
                        "log": str(run_dir / "logs" / f"task-{i:04d}.1.log"),
                    }
                ],
            }
        )
    return {
        "run_id": RUN,
        "plan": "big",
        "status": "succeeded",
        "started_at": T0,
        "duration": 3060.0,
        "tasks": tasks,
    }


def test_a_thousand_tasks_render_quickly(run_dir: Path) -> None:
    """A 1,000-task run renders every task, with four wave lines, in well under a second."""
    view = thousand_tasks(run_dir)
    began = time.perf_counter()
    text = render_report(view, run_dir)
    assert time.perf_counter() - began < 1.0
    assert all(f"task-{i:04d}" in text for i in range(1000))
    assert text.count("<div class=wave ") == 4
    assert text.count("<div class=tl-row>") == 1000


def find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.mark.slow
@pytest.mark.browser
def test_report_renders_in_headless_chromium(
    page: str, view: dict[str, Any], run_dir: Path, tmp_path: Path
) -> None:
    """Headless Chromium loads the report from disk, takes a screenshot and its DOM shows every task."""
    chromium = find_chromium()
    if chromium is None:
        if os.environ.get("PAGENT_REQUIRE_BROWSER") == "1":
            pytest.fail("PAGENT_REQUIRE_BROWSER=1 but chromium is not installed (apt-get install chromium)")
        pytest.skip(
            "chromium is not installed (apt-get install chromium); set PAGENT_REQUIRE_BROWSER=1 to require it"
        )
    report = run_dir / "report.html"
    profile = tmp_path / "chromium-profile"
    shot = tmp_path / "shot.png"
    base = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--window-size=1280,900",
    ]
    done = subprocess.run(
        [*base, f"--screenshot={shot}", report.as_uri()],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000  # a blank page is a few kB; the report has colour and text
    if os.environ.get("PAGENT_REPORT_SHOT"):
        shutil.copy(shot, os.environ["PAGENT_REPORT_SHOT"])
    dom = subprocess.run(
        [*base, "--dump-dom", report.as_uri()], capture_output=True, text=True, timeout=90, check=False
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "<h2>Timeline</h2>" in dom.stdout
    for task in view["tasks"]:
        assert html.escape(task["id"], quote=False) in dom.stdout, task["id"]
    assert "<script" not in dom.stdout.lower()


@pytest.mark.parametrize("state", [*TaskState])
def test_every_task_state_has_its_own_badge_colour(
    view: dict[str, Any], run_dir: Path, state: TaskState
) -> None:
    """No state falls back to the grey "idle" badge unless it is waiting (pending, not run)."""
    view = {**view, "tasks": [{**view["tasks"][0], "state": state.value}]}
    page = render_report(view, run_dir)
    expected = {"pending": "idle", "not_run": "idle"}.get(state.value)
    classes = re.findall(rf'<span class="badge (\w+)">{state.value}</span>', page)
    assert classes, state
    assert (classes[0] == "idle") == (expected == "idle")


def test_an_abandoned_run_is_shown_as_a_warning(view: dict[str, Any], run_dir: Path) -> None:
    page = render_report({**view, "status": "abandoned"}, run_dir)
    assert '<span class="badge warn">abandoned</span>' in page
