"""The real Claude Code CLI waiting on the API: announced retries, dead streams and a rate-limited
preflight, through the installed ``pagent-run`` against scripted Messages APIs on 127.0.0.1
(``tests/test_claude_e2e.py``'s lab).

Skipped, with the reason shown, only where the CLI cannot be installed (no npm, no registry).
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.claude_cli import ensure_claude_cli
from tests.fake_anthropic import ErrorReply, SilentReply, StallReply, TextReply
from tests.test_claude_e2e import Lab

pytestmark = [pytest.mark.slow, pytest.mark.claude]


@pytest.fixture(scope="module")
def claude() -> Path:
    """The installed CLI 2.1.328, or a skip saying why there is none."""
    cli = ensure_claude_cli()
    if cli.path is None:
        pytest.skip(f"Claude Code CLI unavailable: {cli.reason}")
    return cli.path


@pytest.fixture
def lab(tmp_path: Path, repo: Path, claude: Path) -> Iterator[Lab]:
    with contextlib.ExitStack() as servers:
        yield Lab(tmp_path, repo, claude, servers)


def log_of(lab: Lab, task: str) -> str:
    return lab.pagent("logs", str(lab.plan), task)


def test_a_retry_wait_the_cli_announced_is_not_a_stall(lab: Lab) -> None:
    """A 429 with ``retry-after: 6``: the CLI announces ~7 s (``retry_delay_ms``) and sits silent.
    With ``stall_timeout = 2s`` the attempt is allowed the wait and succeeds on the retry."""
    lab.agent(
        "cc", [ErrorReply(429, "slow down", headers={"retry-after": "6"}), TextReply("done")], max_retries=3
    )
    lab.write_plan([{"id": "patient", "agent": "cc", "prompt": "Anything.", "stall_timeout": "2s"}])
    done, took = lab.run()
    print(f"\nannounced 429 wait: {took:.1f}s")
    assert done.returncode == 0, done.stderr
    task = lab.tasks()["patient"]
    assert (task["state"], task["reason"], task["attempts"]) == ("succeeded", "ok", 1)
    assert task["duration"] >= 6
    assert "retrying API, 429, attempt 1/3 in " in done.stderr


def test_an_attempt_stopped_while_waiting_out_a_rate_limit_is_rate_limited(lab: Lab) -> None:
    """A 429 with ``retry-after: 30`` and ``timeout = 6s``: the attempt is stopped during the
    announced wait, and fails ``rate-limited`` (the policy for rate limits), not ``timeout``."""
    lab.agent("cc", when_exhausted=ErrorReply(429, "slow down", headers={"retry-after": "30"}), max_retries=3)
    lab.write_plan(
        [{"id": "limited", "agent": "cc", "prompt": "Anything."}],
        timeout="6s",
        stall_timeout="2s",
        rate_limit_retries=0,
    )
    done, took = lab.run()
    assert done.returncode == 1, done.stderr
    task = lab.tasks()["limited"]
    assert (task["state"], task["reason"], task["attempts"]) == ("failed", "rate-limited", 1)
    assert took < 20
    log = log_of(lab, "limited")
    assert "[pagent] stopping the agent: timeout" in log
    assert "[pagent] it was waiting out an announced retry: rate-limited" in log


def test_a_dead_stream_is_stalled_at_stall_timeout_and_api_timeout_ms_only_ends_silent_requests(
    lab: Lab,
) -> None:
    """``API_TIMEOUT_MS=2000`` for both agents. A stream that goes silent after ``message_start``
    is not ended by it: pagent stops the idle CLI as ``stalled`` soon after ``stall_timeout``
    (10 s) of silence, its CPU bursts notwithstanding (measured before the fix: 28 s from the
    start). A request that gets no response at all is ended by the CLI itself: ``api-timeout``.

    The silence is measured from the attempt's last output (its record's ``last_output_at``) to
    its end, not from its start: on a loaded machine (CI's parallel lanes) the CLI takes longer
    to start, and the work it does after its first event keeps the window's CPU above 2 % for a
    few seconds more. Measured: 12-13 s of silence idle, 16.8 s with two busy loops on both
    cores."""
    timeout_ms = {"API_TIMEOUT_MS": "2000"}
    lab.agent("cc-stall", when_exhausted=StallReply(), max_retries=0)
    lab.agent("cc-silent", when_exhausted=SilentReply(), max_retries=0)
    for name in ("cc-stall", "cc-silent"):
        lab.agents[name]["env"].update(timeout_ms)
    lab.write_plan(
        [
            {"id": "stream", "agent": "cc-stall", "prompt": "Anything."},
            {"id": "request", "agent": "cc-silent", "prompt": "Anything."},
        ],
        jobs=2,
        stall_timeout="10s",
    )
    done, took = lab.run()
    print(f"\ndead stream and silent request: {took:.1f}s")
    assert done.returncode == 1, done.stderr
    tasks = lab.tasks()
    stream, request = tasks["stream"], tasks["request"]
    assert (stream["state"], stream["reason"]) == ("failed", "stalled")
    with contextlib.closing(sqlite3.connect(lab.plan.parent / ".pagent" / "state.db")) as db:
        ((last_output, ended),) = db.execute(
            "SELECT last_output_at, ended_at FROM attempts WHERE task_id = 'stream'"
        ).fetchall()
    # Never before stall_timeout; then at most a tick (2.5 s), the bursts leaving the window and
    # the stop itself.
    assert 10 <= ended - last_output < 20, (ended - last_output, stream["duration"])
    assert (request["state"], request["reason"]) == ("failed", "api-timeout")
    assert request["duration"] < 10


def test_a_429_then_a_529_at_preflight_do_not_stop_the_night(lab: Lab) -> None:
    """The preflight's one-line prompt is answered 429, then 529 (the CLI retries neither:
    ``CLAUDE_CODE_MAX_RETRIES=0``): pagent says so, tries again after 5 s and 10 s, and the
    night runs: the task succeeds."""
    server = lab.agent(
        "cc",
        [ErrorReply(429, "rate limited"), ErrorReply(529, "overloaded"), TextReply("OK"), TextReply("done")],
        preflight_scripted=True,
        max_retries=0,
    )
    lab.write_plan([{"id": "night", "agent": "cc", "prompt": "Anything."}])
    done, took = lab.run()
    assert done.returncode == 0, done.stderr
    task = lab.tasks()["night"]
    assert (task["state"], task["reason"]) == ("succeeded", "ok")
    assert "agent 'cc' preflight failed: rate-limited" in done.stderr
    assert "trying again in 5s" in done.stderr
    assert "trying again in 10s" in done.stderr
    assert server.remaining == 0
    assert took >= 15
