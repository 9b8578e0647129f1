"""Codex, Gemini CLI and opencode failing in their own ways, through the installed ``pagent-run``.

Each test is one plan with a task per CLI (the real pinned CLIs, each against its own scripted
server on 127.0.0.1; see ``tests/agent_lab.py``), so the kinds run side by side: a 429, a tool
refused under exit 0, the kinds' own idle bounds on a hung server, authentication and billing
failures that stop every further task of their kind, and preflights that fail before anything
is created. The successes, HTTP 500s and stalls of all four kinds: ``tests/test_agents_e2e.py``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.agent_lab import lab_in, scripted
from tests.conftest import git
from tests.fake_http import ErrorReply, StallReply, TextReply, ToolCallReply

pytestmark = [pytest.mark.slow, pytest.mark.agents, pytest.mark.timeout(900)]

PATCH = "*** Begin Patch\n*** Add File: codex.txt\n+hello\n*** End Patch\n"


def test_429_is_rate_limited(tmp_path: Path, repo: Path) -> None:
    """Every request 429: each CLI's task fails rate-limited (with rate_limit_retries = 0)."""
    with lab_in(tmp_path, repo) as lab:
        slow = "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1."
        lab.codex("codex-429", when_exhausted=ErrorReply(429, slow))
        lab.gemini("gemini-429", when_exhausted=ErrorReply(429, "Resource has been exhausted"))
        lab.opencode("opencode-429", when_exhausted=ErrorReply(429, slow))
        names = ("codex", "gemini", "opencode")
        lab.write_plan(
            [{"id": name, "agent": f"{name}-429", "prompt": "Anything."} for name in names],
            rate_limit_retries=0,
        )
        done, took = lab.run()
        print(f"\n429 on three kinds: {took:.1f}s")
        assert done.returncode == 1, done.stderr
        tasks = lab.tasks()
        for name in names:
            assert (tasks[name]["state"], tasks[name]["reason"], tasks[name]["attempts"]) == (
                "failed",
                "rate-limited",
                1,
            ), name
        # Gemini retried twice by itself (general.maxAttempts = 3): its stderr said so, live.
        assert "retrying API, 429, attempt 2 failed task=gemini" in done.stderr
        assert tasks["gemini"]["detail"]["api_retries"] == 2
        assert tasks["opencode"]["detail"]["gave_up"] is True


def test_tool_refused_under_exit_0_is_not_a_success(tmp_path: Path, repo: Path) -> None:
    """A read-only Codex sandbox, Gemini without --yolo, opencode with edits denied by the user's
    own config: each CLI exits 0 and reports success, and each task fails as tool-failed."""
    user_config = tmp_path / "user-config"
    (user_config / "opencode").mkdir(parents=True)
    (user_config / "opencode" / "opencode.json").write_text(json.dumps({"permission": {"edit": "deny"}}))
    with lab_in(tmp_path, repo) as lab:
        # Custom commands are complete as given: these lack the built-in agents' edit flags.
        codex = lab.codex(
            "codex-ro",
            [ToolCallReply("apply_patch", PATCH), TextReply("I could not write codex.txt.")],
            command=["codex", "exec", "--json"],
        )
        gemini = lab.gemini(
            "gemini-ask",
            [
                ToolCallReply("write_file", {"file_path": "gemini.txt", "content": "hello\n"}),
                TextReply("I could not write gemini.txt."),
            ],
            command=["gemini", "--output-format", "stream-json", "--skip-trust"],
        )
        opencode = lab.opencode(
            "opencode-deny",
            [
                ToolCallReply("write", {"filePath": "opencode.txt", "content": "hello\n"}),
                TextReply("I could not write opencode.txt."),
            ],
            home="user",  # the user's config (and its denied edits) applies, pagent's merges over it
        )
        lab.agents["opencode-deny"]["env"]["XDG_CONFIG_HOME"] = str(user_config)
        names = ("codex", "gemini", "opencode")
        lab.write_plan(
            [
                {"id": name, "agent": agent, "prompt": "Write the file."}
                for name, agent in zip(names, ("codex-ro", "gemini-ask", "opencode-deny"), strict=True)
            ]
        )
        done, took = lab.run()
        print(f"\ntool refusals on three kinds: {took:.1f}s")
        assert done.returncode == 1, done.stderr
        tasks = lab.tasks()
        for name in names:
            task = tasks[name]
            assert (task["state"], task["reason"], task["exit_code"]) == ("failed", "tool-failed", 0), name
            assert not (Path(task["worktree"]) / f"{name}.txt").exists(), name
            assert task["detail"]["tool_failures"], name
        # Codex said so only on stderr, which the engine feeds to the kind.
        assert "read-only sandbox" in tasks["codex"]["detail"]["tool_failures"][0]["error"]
        assert tasks["gemini"]["detail"]["tool_failures"][0]["error_type"] == "tool_not_registered"
        assert tasks["opencode"]["detail"]["tool_failures"][0]["tool_name"] == "write"
        for server in (codex, gemini, opencode):
            assert server.remaining == 0  # each CLI went on to its final message


def test_idle_bounds_end_a_hung_stream_as_api_timeout(tmp_path: Path, repo: Path) -> None:
    """``idle_timeout`` becomes Codex's stream_idle_timeout_ms and opencode's chunk/header
    timeouts: a stream that opens and goes silent ends as api-timeout, long before stall_timeout."""
    with lab_in(tmp_path, repo) as lab:
        codex = lab.codex("codex-idle", when_exhausted=StallReply(), idle_timeout="3s")
        opencode = lab.opencode("opencode-idle", when_exhausted=StallReply(), idle_timeout="3s")
        lab.write_plan(
            [
                {"id": "codex", "agent": "codex-idle", "prompt": "Anything."},
                {"id": "opencode", "agent": "opencode-idle", "prompt": "Anything."},
            ],
            stall_timeout="5m",
        )
        done, took = lab.run()
        print(f"\nidle bounds: {took:.1f}s")
        assert done.returncode == 1, done.stderr
        tasks = lab.tasks()
        for name in ("codex", "opencode"):
            assert (tasks[name]["state"], tasks[name]["reason"]) == ("failed", "api-timeout"), name
        assert "idle timeout" in tasks["codex"]["detail"]["error_text"]
        # Codex tried twice (stream_max_retries = 1); opencode was stopped after its third failed
        # try, its fourth already under way.
        assert len(scripted(codex)) == 2
        assert len(scripted(opencode)) == 4
        assert took < 120


def test_auth_and_billing_stop_further_tasks_of_their_kind(tmp_path: Path, repo: Path) -> None:
    """A quota error (billing) and a 401 (auth): never retried, and no further task of that kind."""
    with lab_in(tmp_path, repo) as lab:
        quota = lab.codex(
            "codex-quota",
            when_exhausted=ErrorReply(429, "You exceeded your current quota.", code="insufficient_quota"),
        )
        lab.codex("codex-other", [TextReply("never asked")])
        denied = lab.gemini("gemini-401", when_exhausted=ErrorReply(401, "API key not valid."))
        lab.gemini("gemini-other", [TextReply("never asked")])
        order = ("codex-quota", "codex-other", "gemini-401", "gemini-other")
        lab.write_plan(
            [{"id": name, "agent": name, "prompt": "Anything."} for name in order], jobs=1, retries=2
        )
        done, took = lab.run()
        print(f"\nauth and billing: {took:.1f}s")
        assert done.returncode == 1, done.stderr
        tasks = lab.tasks()
        expected = {
            "codex-quota": ("failed", "billing", 1),
            "codex-other": ("not_run", "billing", 0),
            "gemini-401": ("failed", "auth", 1),
            "gemini-other": ("not_run", "auth", 0),
        }
        assert {n: (t["state"], t["reason"], t["attempts"]) for n, t in tasks.items()} == expected
        assert len(scripted(quota)) == 1  # billing: Codex does not retry it, pagent neither
        assert len(scripted(denied)) == 1  # Gemini never retries a 401
        assert "codex agents stopped: billing" in done.stderr
        assert "gemini agents stopped: auth" in done.stderr


@pytest.mark.parametrize("kind", ["codex", "gemini", "opencode"])
def test_preflight_auth_failure_stops_before_any_worktree(tmp_path: Path, repo: Path, kind: str) -> None:
    """A 401 to the preflight's one-line prompt: exit 1, one line, no branch or worktree made."""
    with lab_in(tmp_path, repo) as lab:
        getattr(lab, kind)(
            "agent", when_exhausted=ErrorReply(401, "Incorrect API key provided"), preflight_scripted=True
        )
        lab.write_plan([{"id": "never", "agent": "agent", "prompt": "Anything."}])
        branches = git(repo, "branch", "--list")
        done, took = lab.run()
        print(f"\npreflight 401, {kind}: {took:.1f}s")
        assert done.returncode == 1
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("pagent: agent 'agent' preflight failed: auth"), lines[0]
        assert git(repo, "branch", "--list") == branches
        assert git(repo, "worktree", "list").count("\n") == 1
        assert took < 60
