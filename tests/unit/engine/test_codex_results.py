"""A Codex task's structured result through one task run (scripted executor, no process): the
final message is the result only when the task asked for one, and its ``status`` decides."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.fakes import FakeExecutor, Play
from tests.unit.engine.test_taskrun import Lab

pytestmark = pytest.mark.anyio

SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"enum": ["done", "nothing_to_do", "needs_input"]},
        "question": {"type": "string"},
    },
    "required": ["status"],
}
THREAD = "01a23429-f6b7-7161-b63a-1662c44caffd"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def codex_says(final: str) -> bytes:
    """What ``codex exec --json`` prints for one turn ending with the message ``final``."""
    events: list[dict[str, Any]] = [
        {"type": "thread.started", "thread_id": THREAD},
        {"type": "turn.started"},
        {"type": "item.completed", "item": {"id": "item_0", "type": "agent_message", "text": final}},
        {"type": "turn.completed", "usage": {"input_tokens": 100, "output_tokens": 20}},
    ]
    return "".join(json.dumps(event) + "\n" for event in events).encode()


async def run_one(tmp_path: Path, final: str, **settings: Any) -> tuple[Lab, Any]:
    lab = Lab(tmp_path, ["t"], {"agent": "codex", "retries": 0, **settings})
    await lab.run("t", FakeExecutor({"t": [Play(output=[codex_says(final)], changed=())]}))
    (attempt,) = lab.store.attempts(lab.state.run_id, "t")
    return lab, attempt


async def test_needs_input_from_the_final_message(tmp_path: Path) -> None:
    asked = json.dumps({"status": "needs_input", "question": "SQLite or PostgreSQL?"})
    lab, attempt = await run_one(tmp_path, asked, result_schema=SCHEMA)
    assert lab.outcome("t") == ("failed", 1, "needs-input")
    assert json.loads(attempt.result) == {"status": "needs_input", "question": "SQLite or PostgreSQL?"}
    assert json.loads(attempt.detail)["question"] == "SQLite or PostgreSQL?"
    assert attempt.session_id == THREAD


async def test_nothing_to_do_lifts_require_changes(tmp_path: Path) -> None:
    final = json.dumps({"status": "nothing_to_do"})
    lab, _ = await run_one(tmp_path, final, result_schema=SCHEMA, require_changes=True)
    assert lab.outcome("t") == ("succeeded", 1, "ok")
    done, _ = await run_one(
        tmp_path / "done", json.dumps({"status": "done"}), result_schema=SCHEMA, require_changes=True
    )
    assert done.outcome("t") == ("failed", 1, "no-changes")


async def test_a_json_final_message_is_no_result_without_a_schema(tmp_path: Path) -> None:
    """No ``result_schema``: a final message that happens to be JSON is only the final text."""
    lab, attempt = await run_one(tmp_path, json.dumps({"status": "needs_input"}))
    assert lab.outcome("t") == ("succeeded", 1, "ok")
    assert attempt.result is None
    assert "structured_output" not in json.loads(attempt.detail or "{}")
