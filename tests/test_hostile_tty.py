"""What an agent prints must not drive the user's terminal.

Issue 12 promises that agent output shown in the live view is stripped of control sequences,
and the README that without a terminal (cron, a file) the output carries no escape sequence at
all. The live view runs on a real pseudo-terminal, like the progress test in ``test_ops``; the
agents are ``tests/agents/rogue.py`` printing hostile bytes and a fake Claude agent asking a
question.
Each case was written first against code that did not hold it (issue 12); every one holds now.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import time
from pathlib import Path

import pytest
import tomli
import tomli_w

from tests.conftest import bin_path
from tests.hostile import run, write_plan

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

# Set the window title, switch to the alternate screen, clear it: what no agent may do to us.
HOSTILE = b"\x1b]0;PWNED\x07\x1b[?1049h\x1b[2J HOSTILE-LINE"


def on_a_terminal(plan: Path, timeout: float = 30) -> tuple[int, bytes]:
    """Run ``pagent-run PLAN`` with stdout and stderr on a pseudo-terminal; its code and screen."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [bin_path("pagent-run"), plan],
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env={**os.environ, "COLUMNS": "150", "TERM": "xterm"},
    )
    os.close(follower)
    chunks = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    data = os.read(leader, 65536)
                except OSError:  # EIO: the last writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif proc.poll() is not None:
                break
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        os.close(leader)
    return proc.returncode, b"".join(chunks)


def printing(tmp_path: Path, repo: Path, data: bytes) -> Path:
    """A plan whose agent prints ``data`` as its last line, then stays 1.5 s (three redraws)."""
    line = (data + b"\n").hex()
    return write_plan(tmp_path / "plans", repo, {"a": {"prompt": f"print-hex {line}\nsleep 1.5"}})


def test_the_live_view_strips_escape_sequences_from_agent_output(tmp_path: Path, repo: Path) -> None:
    """Before issue 12, the title sequence, the alternate screen and the clear screen reach the terminal
    verbatim (only BEL is dropped, by rich)."""
    code, screen = on_a_terminal(printing(tmp_path, repo, HOSTILE))
    assert code == 0
    assert b"HOSTILE-LINE" in screen  # the line was shown...
    assert b"\x1b]0;PWNED" not in screen  # ...without its sequences
    assert b"\x1b[?1049h" not in screen
    assert b"\x1b[2J" not in screen


def test_the_live_view_shows_agent_output_literally_not_as_markup(tmp_path: Path, repo: Path) -> None:
    """An agent printing ``[bold]x[/bold]`` sees it rendered bold, brackets gone; ``[/nope]``
    (a closing tag never opened) would make rich raise while rendering."""
    code, screen = on_a_terminal(printing(tmp_path, repo, b"[bold]MARKUP[/bold] plain"))
    assert code == 0
    assert b"[bold]MARKUP[/bold]" in screen


def test_without_a_terminal_agent_output_never_reaches_the_event_lines(tmp_path: Path, repo: Path) -> None:
    """Holds: with stderr a pipe (cron) the agent's bytes stay in its log; pagent-run's own
    output has no escape sequence."""
    done = run(printing(tmp_path, repo, HOSTILE))
    assert done.returncode == 0
    assert "\x1b" not in done.stderr
    assert "\x1b" not in done.stdout


def test_a_wave_name_with_escape_sequences_does_not_reach_cron_output(tmp_path: Path, repo: Path) -> None:
    """A careless plan names a wave with control characters (copied from a terminal). Without a
    terminal pagent-run promises no escape sequences; today the wave name brings them."""
    plan = write_plan(tmp_path / "plans", repo, {"a": {}})
    table = tomli.loads(plan.read_text())
    table["waves"][0]["name"] = "nightly\x1b]0;PWNED\x07\x1b[2J"
    plan.write_text(tomli_w.dumps(table))
    done = run(plan)
    assert done.returncode in (0, 2)
    assert "\x1b" not in done.stderr
    assert "\x1b" not in done.stdout


QUESTION_AGENT = """
import json, sys
sys.stdin.read()
print(json.dumps({"type": "system", "subtype": "init", "session_id": "s1"}), flush=True)
print(json.dumps({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1,
                  "session_id": "s1", "total_cost_usd": 0.0,
                  "result": "Which one? \\x1b]0;PWNED\\x07\\x1b[2J Shall I go on?"}), flush=True)
"""


def test_a_question_with_escape_sequences_is_shown_without_them(tmp_path: Path, repo: Path) -> None:
    """A Claude-kind agent that changed nothing ends with a question (``needs-input``); the
    summary (stdout, mailed by cron) and ``pagent status`` show the question -- today with
    the agent's escape sequences in it."""
    fake = tmp_path / "ask.py"
    fake.write_text(QUESTION_AGENT)
    plan = write_plan(
        tmp_path / "plans",
        repo,
        {"a": {"agent": "ask"}},
        agents={"ask": {"command": ["{python}", str(fake)], "kind": "claude", "preflight": False}},
    )
    done = run(plan)
    assert done.returncode == 1
    assert "Which one?" in done.stdout  # the question is shown...
    assert "\x1b" not in done.stdout  # ...without the sequences
    status = subprocess.run(
        [bin_path("pagent"), "status", plan], capture_output=True, text=True, timeout=30, check=True
    ).stdout
    assert "\x1b" not in status
