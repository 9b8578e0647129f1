"""The four agent kinds end to end: one plan, ``jobs = 4``, the real CLIs, scripted APIs.

Issue 15's "done when", through the installed ``pagent-run``: tasks on ``claude``, ``codex``,
``gemini`` and ``opencode`` (each CLI pinned and installed with npm on first use, each talking
to its own scripted server on 127.0.0.1, the three new kinds configured by ``base_url`` and
``model`` alone) all succeed with their file committed on their own branch; the same plan with
every server answering HTTP 500 fails every task with an ``api-error`` class within two
minutes, preflight included; servers that hang are stopped as ``stalled``.

Skipped, with the reason, only where npm cannot install a CLI (required with
``PAGENT_REQUIRE_AGENT_CLIS=1``, as ``.ci/run`` sets it).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests import fake_anthropic
from tests.agent_lab import Lab, lab_in
from tests.conftest import git
from tests.fake_http import ErrorReply, StallReply, TextReply, ToolCallReply

pytestmark = [pytest.mark.slow, pytest.mark.agents, pytest.mark.timeout(900)]

KINDS = ("claude", "codex", "gemini", "opencode")
SESSION = {
    "claude": r"[0-9a-f-]{36}",
    "codex": r"[0-9a-f-]{36}",  # the thread id
    "gemini": r"[0-9a-f-]{36}",
    "opencode": r"ses_[0-9A-Za-z]+",
}


def _writes(kind: str) -> list[Any]:
    """The script of a task whose CLI writes ``<kind>.txt`` with its own edit tool, then says so."""
    name, text = f"{kind}.txt", f"hello from {kind}\n"
    calls: dict[str, Any] = {
        "claude": fake_anthropic.write_file(name, text),
        "codex": ToolCallReply("exec_command", {"cmd": f"printf 'hello from {kind}\\n' > {name}"}),
        "gemini": ToolCallReply("write_file", {"file_path": name, "content": text}),
        "opencode": ToolCallReply("write", {"filePath": name, "content": text}),
    }
    done = fake_anthropic.TextReply(f"Wrote {name}.") if kind == "claude" else TextReply(f"Wrote {name}.")
    return [calls[kind], done]


def _declare(lab: Lab, kind: str, script: list[Any], exhausted: Any = None, **options: Any) -> Any:
    """Agent ``<kind>-agent`` of that kind with its own server."""
    if exhausted is not None:
        options["when_exhausted"] = exhausted
    return getattr(lab, kind)(f"{kind}-agent", script, **options)


def _tasks() -> list[dict[str, Any]]:
    return [
        {"id": f"{kind}-task", "agent": f"{kind}-agent", "prompt": f"Create {kind}.txt."} for kind in KINDS
    ]


def test_four_kinds_each_write_their_file(tmp_path: Path, repo: Path) -> None:
    """All four succeed with jobs = 4: file committed on their branch, session and tokens recorded."""
    with lab_in(tmp_path, repo) as lab:
        servers = {kind: _declare(lab, kind, _writes(kind)) for kind in KINDS}
        lab.write_plan(_tasks(), jobs=4)
        done, took = lab.run(timeout=300)
        print(f"\nfour kinds, success: {took:.1f}s")
        assert done.returncode == 0, done.stderr
        view = lab.status()
        tasks = {task["id"]: task for task in view["tasks"]}
        branches = set()
        for kind in KINDS:
            task = tasks[f"{kind}-task"]
            assert (task["state"], task["reason"], task["attempts"]) == ("succeeded", "ok", 1), kind
            assert git(repo, "show", f"{task['branch']}:{kind}.txt") == f"hello from {kind}\n", kind
            assert re.fullmatch(SESSION[kind], task["session_id"] or ""), (kind, task["session_id"])
            assert servers[kind].remaining == 0, kind
            branches.add(task["branch"])
            # Every scripted reply reported 100 tokens in / 20 out (Claude counts its cache too).
            assert task["tokens_in"] >= 200, (kind, task)
            assert task["tokens_out"] >= 40, (kind, task)
        assert len(branches) == 4
        assert tasks["claude-task"]["cost_usd"] > 0
        assert tasks["opencode-task"]["cost_usd"] == 0  # pagent's provider has no prices
        assert tasks["codex-task"]["cost_usd"] is None  # Codex reports none
        assert tasks["gemini-task"]["cost_usd"] is None  # nor does Gemini
        # The preflight checked every agent: four versions recorded.
        versions = dict(part.split(": ", 1) for part in view["agent_version"].split("; "))
        assert set(versions) == {f"{kind}-agent" for kind in KINDS}
        assert "0.169.0" in versions["codex-agent"]
        assert versions["gemini-agent"] == "0.61.0"
        assert versions["opencode-agent"] == "1.18.33"
        # The CLIs' own state stayed out of pagent-run's HOME (the user's home here).
        assert sorted(p.name for p in lab.home.iterdir()) == []
        homes = lab.plan.parent / ".pagent" / "homes"
        assert sorted(p.name for p in homes.iterdir()) == ["codex-agent", "opencode-agent"]


def test_four_kinds_on_http_500_fail_as_api_errors_within_two_minutes(tmp_path: Path, repo: Path) -> None:
    """Every server answers 500, the preflight's prompt too: each task fails with an api-error
    class, the whole run (preflights, one retry per task) well within two minutes."""
    with lab_in(tmp_path, repo) as lab:
        for kind in KINDS:
            exhausted: Any = (
                fake_anthropic.ErrorReply(500, "boom") if kind == "claude" else ErrorReply(500, "boom")
            )
            _declare(lab, kind, [], exhausted, preflight_scripted=True)
        lab.write_plan(_tasks(), jobs=4, retries=1, retry_delay="1s")
        done, took = lab.run(timeout=300)
        print(f"\nfour kinds, HTTP 500: {took:.1f}s")
        assert done.returncode == 1, done.stderr
        assert took < 120
        tasks = lab.tasks()
        for kind in KINDS:
            task = tasks[f"{kind}-task"]
            assert task["state"] == "failed", kind
            assert task["reason"].startswith("api-error"), (kind, task["reason"])
            assert [h["reason"].split()[0] for h in task["history"]] == ["api-error", "api-error"], kind
        # opencode names no status before its last try, which pagent does not wait for.
        assert tasks["opencode-task"]["reason"] == "api-error"
        assert {tasks[f"{k}-task"]["reason"] for k in ("claude", "codex", "gemini")} == {"api-error 500"}
        # The preflights went on after their tries: the failure was transient as far as they knew.
        assert done.stderr.count("preflight failed: api-error") >= 4
        # Gemini's retries show only on its stderr, which the engine feeds to the kind: live.
        assert "retrying API, 500, attempt 1 failed task=gemini-task" in done.stderr


def test_four_kinds_on_hung_servers_are_stopped_as_stalled(tmp_path: Path, repo: Path) -> None:
    """Servers that accept the request and then say nothing: each CLI is stopped as stalled."""
    with lab_in(tmp_path, repo) as lab:
        for kind in KINDS:
            # Claude's stream opens with message_start, the others' with headers (and an event).
            hang: Any = fake_anthropic.SilentReply() if kind == "claude" else StallReply()
            _declare(lab, kind, [], hang)
        lab.write_plan(_tasks(), jobs=4, stall_timeout="20s")
        done, took = lab.run(timeout=300)
        print(f"\nfour kinds, hung servers: {took:.1f}s")
        assert done.returncode == 1, done.stderr
        tasks = lab.tasks()
        for kind in KINDS:
            task = tasks[f"{kind}-task"]
            assert (task["state"], task["reason"]) == ("failed", "stalled"), (kind, task["reason"])
            assert "[pagent] stopping the agent: stalled" in lab.log(f"{kind}-task"), kind
        assert took < 150
