"""What an agent or a plan wrote never drives the user's terminal (issue 12).

The live view is rendered by a real rich ``Console`` onto a string buffer as if it were a
terminal; event lines by the real structlog configuration onto a buffer; the summary and status
from views holding hostile text. Any escape sequence in the output must be rich's own styling,
never the agent's.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
import structlog
from rich.console import Console

from supervisor.engine import events
from supervisor.plan.names import printable
from supervisor.ui.console import EventPrinter, configure_logging
from supervisor.ui.progress import ProgressView
from supervisor.ui.tables import format_status, format_summary

HOSTILE = "\x1b]0;PWNED\x07\x1b[?1049h\x1b[2J HOSTILE-LINE \x9b31m\x1bc"
AGENT_SEQUENCES = ("\x1b]0;", "\x1b[?1049h", "\x1b[2J", "\x9b", "\x1bc", "\x07")


def shown(view: ProgressView) -> str:
    buffer = io.StringIO()
    Console(file=buffer, force_terminal=True, color_system="truecolor", width=160).print(view)
    return buffer.getvalue()


def test_the_live_view_strips_the_agents_escape_sequences() -> None:
    view = ProgressView()
    view(events.RunStarted("r", "p", Path("/r"), 1, False))
    view(events.AttemptStarted("t", 1, 7, Path("/w")))
    view(events.Output("t", HOSTILE))
    screen = shown(view)
    assert "HOSTILE-LINE" in screen
    for sequence in AGENT_SEQUENCES:
        assert sequence not in screen, repr(sequence)


@pytest.mark.parametrize("line", ["[bold]MARKUP[/bold] plain", "[/nope] closes nothing", "[link=x]y"])
def test_the_live_view_shows_agent_output_literally(line: str) -> None:
    """Output is Text, never markup: the brackets stay, and a stray closing tag cannot raise."""
    view = ProgressView()
    view(events.AttemptStarted("t", 1, 7, Path("/w")))
    view(events.Output("t", line))
    assert line in shown(view)


def event_lines(fmt: str, *sent: events.Event) -> str:
    buffer = io.StringIO()
    configure_logging(fmt, buffer)
    try:
        printer = EventPrinter()
        for event in sent:
            printer(event)
    finally:
        structlog.reset_defaults()
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_event_lines_carry_no_control_character_whatever_the_fields(fmt: str) -> None:
    text = event_lines(
        fmt,
        events.WaveStarted(0, "nightly" + HOSTILE, 1),
        events.Notice("claude agents stopped: auth (" + HOSTILE + ")", "t"),
        events.TaskFinished("t", "failed", 1, "api-error 500\nsecond line" + HOSTILE, 1.0),
    )
    lines = text.strip().splitlines()
    assert len(lines) == 3  # one line per event, whatever a field held
    assert "HOSTILE-LINE" in text
    for sequence in AGENT_SEQUENCES:
        assert sequence not in text, repr(sequence)
    if fmt == "json":
        assert json.loads(lines[0])["event"] == "wave started"


def hostile_view() -> dict[str, Any]:
    task = {
        "id": "t",
        "wave": "w",
        "state": "failed",
        "attempts": 1,
        "reason": "needs-input",
        "branch": "pagent/p/t",
        "log": "/logs/t.1.log",
        "duration": 1.0,
        "detail": {
            "asked": "Which one? " + HOSTILE + " Shall I go on?",
            "permission_denials": [{"tool_name": "Bash" + HOSTILE, "tool_input": {"command": "rm\x1b[2J"}}],
        },
    }
    return {
        "run_id": "r",
        "plan": "p",
        "plan_path": "/p/plan.toml",
        "status": "failed",
        "duration": 2.0,
        "counts": {"failed": 1},
        "cost_usd": None,
        "note": "claude agents stopped: " + HOSTILE,
        "tasks": [task],
        "notifications": [],
        "integration": None,
    }


@pytest.mark.parametrize("render", [lambda v: format_summary(v, "/runs/r"), format_status])
def test_the_summary_and_status_show_the_agents_question_without_its_sequences(render: Any) -> None:
    text = render(hostile_view())
    assert "Which one?" in text
    assert "Shall I go on?" in text
    assert "rm" in text
    assert not any((ord(c) < 32 and c != "\n") or 0x7F <= ord(c) <= 0x9F for c in text), repr(text)


def test_printable_keeps_text_and_drops_only_controls() -> None:
    assert printable("plain ünïcode ☾ [bold]") == "plain ünïcode ☾ [bold]"
    assert printable("a\tb\nc\r") == "a b c "
    assert printable("\x1b[31mred\x1b[0m") == "red"
    assert printable("\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\") == "link"
