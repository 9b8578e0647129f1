"""End to end with the real Claude Code CLI: the installed ``pagent-run`` on a real git repository,
each agent talking to its own scripted Messages API on 127.0.0.1.

Skipped, with the reason shown, only where the CLI cannot be installed (no npm, no registry).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from supervisor.agents.preflight import PROMPT as PREFLIGHT_PROMPT
from tests.claude_cli import claude_env, ensure_claude_cli
from tests.conftest import GIT_IDENTITY, bin_path, git
from tests.fake_anthropic import (
    ErrorReply,
    FakeAnthropic,
    JsonObject,
    Reply,
    SilentReply,
    TextReply,
    is_scripted_request,
    run_bash,
    usage_limit_reply,
    write_file,
)

pytestmark = [pytest.mark.slow, pytest.mark.claude]

CLI_ARGS = ["-p", "--output-format", "stream-json", "--verbose"]
ACCEPT_EDITS = ["--permission-mode", "acceptEdits"]
PREFLIGHT_MARK = PREFLIGHT_PROMPT.split(":")[0]  # "pagent-run preflight"
RUN_TIMEOUT = 60.0
RETRY_STATUS = re.compile(r"^retrying API, 500, attempt [1-3]/3$")


@pytest.fixture(scope="module")
def claude() -> Path:
    """The installed CLI 2.1.328, or a skip saying why there is none."""
    cli = ensure_claude_cli()
    if cli.path is None:
        pytest.skip(f"Claude Code CLI unavailable: {cli.reason}")
    return cli.path


def not_preflight(method: str, path: str, body: JsonObject | None) -> bool:
    """Scripted requests, except the preflight's one-line prompt (answered "ok" off-script)."""
    return is_scripted_request(method, path, body) and PREFLIGHT_MARK not in json.dumps(
        (body or {}).get("messages")
    )


class Lab:
    """A repository, a plan beside it and one fake API per agent, all under ``tmp_path``."""

    def __init__(self, tmp_path: Path, repo: Path, claude: Path, servers: contextlib.ExitStack) -> None:
        self.tmp = tmp_path
        self.repo = repo
        self.claude = claude
        self._servers = servers
        self.agents: dict[str, Any] = {}
        self.plan = tmp_path / "plans" / "plan.toml"
        # pagent-run's own environment: nothing of the outer shell's ANTHROPIC_* or CLAUDE* leaks.
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        self.env = {"PATH": os.environ["PATH"], "HOME": str(home), "LANG": "C.UTF-8", **GIT_IDENTITY}

    def agent(
        self,
        name: str,
        script: Sequence[Reply] = (),
        *,
        when_exhausted: Reply | None = None,
        extra_args: Sequence[str] = ACCEPT_EDITS,
        command: str | None = None,
        preflight_scripted: bool = False,
        **env_options: Any,
    ) -> FakeAnthropic:
        """Declare agent ``name`` of kind claude with its own API server answering ``script``;
        ``env_options`` go to ``claude_env`` (``max_retries``, ``api_key``, ``oauth_token``)."""
        options: dict[str, Any] = {
            "is_scripted": is_scripted_request if preflight_scripted else not_preflight
        }
        if when_exhausted is not None:
            options["when_exhausted"] = when_exhausted
        server = self._servers.enter_context(FakeAnthropic(script, **options))
        home = self.tmp / f"home-{name}"
        home.mkdir()
        self.agents[name] = {
            "command": [command or str(self.claude), *CLI_ARGS],
            "kind": "claude",
            "extra_args": list(extra_args),
            "env": claude_env(server.url, home, **env_options),
        }
        return server

    def write_plan(self, tasks: list[dict[str, Any]], jobs: int = 3, **defaults: Any) -> Path:
        table = {
            "repo": os.path.relpath(self.repo, self.plan.parent),
            "jobs": jobs,
            "defaults": {
                "retries": 0,
                "retry_delay": "0.1s",
                "timeout": "1m",
                "kill_grace": "1s",
                "min_free_memory": "1M",
                **defaults,
            },
            "agents": self.agents,
            "waves": [{"name": "one", "tasks": tasks}],
        }
        self.plan.parent.mkdir(exist_ok=True)
        self.plan.write_text(tomli_w.dumps(table))
        return self.plan

    def popen(self) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(bin_path("pagent-run")), str(self.plan)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def run(self) -> tuple[subprocess.CompletedProcess[str], float]:
        """Run the plan with the installed ``pagent-run``; the result and how long it took."""
        started = time.monotonic()
        done = subprocess.run(
            [str(bin_path("pagent-run")), str(self.plan)],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        print(f"pagent-run exited {done.returncode}\n--- stdout\n{done.stdout}--- stderr\n{done.stderr}")
        return done, time.monotonic() - started

    def pagent(self, *args: str) -> str:
        done = subprocess.run(
            [str(bin_path("pagent")), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout

    def status(self) -> dict[str, Any]:
        view: dict[str, Any] = json.loads(self.pagent("status", str(self.plan), "--json"))
        return view

    def tasks(self) -> dict[str, dict[str, Any]]:
        return {task["id"]: task for task in self.status()["tasks"]}


def _event_type(line: str) -> str | None:
    """The ``type`` of a stream-json line (the CLI does not always print it first), or None."""
    with contextlib.suppress(ValueError):
        event = json.loads(line)
        return str(event.get("type")) if isinstance(event, dict) else None
    return None


@pytest.fixture
def lab(tmp_path: Path, repo: Path, claude: Path) -> Iterator[Lab]:
    with contextlib.ExitStack() as servers:
        yield Lab(tmp_path, repo, claude, servers)


def test_write_400_and_silent_connection(lab: Lab) -> None:
    """Issue 4's "done when": a real Write succeeds with cost and turns, a 400 and a silent API fail."""
    lab.agent("cc-ok", [write_file("hello.txt", "hello from the fake API\n"), TextReply("Wrote hello.txt.")])
    lab.agent("cc-400", when_exhausted=ErrorReply(400, "bad request"))
    lab.agent("cc-silent", when_exhausted=SilentReply())  # no API_TIMEOUT_MS: the CLI would wait ~6 min
    lab.write_plan(
        [
            {"id": "writes", "agent": "cc-ok", "prompt": "Create hello.txt."},
            {"id": "bad-request", "agent": "cc-400", "prompt": "Anything."},
            {"id": "silent", "agent": "cc-silent", "prompt": "Anything.", "stall_timeout": "3s"},
        ]
    )
    done, took = lab.run()
    print(f"\n3-task claude plan: {took:.1f}s")
    assert done.returncode == 1, done.stderr
    assert took < 30

    view = lab.status()
    tasks = {task["id"]: task for task in view["tasks"]}
    writes = tasks["writes"]
    assert (writes["state"], writes["reason"], writes["attempts"]) == ("succeeded", "ok", 1)
    assert (Path(writes["worktree"]) / "hello.txt").read_text() == "hello from the fake API\n"
    assert git(lab.repo, "show", f"{writes['branch']}:hello.txt") == "hello from the fake API\n"
    assert writes["cost_usd"] > 0
    assert writes["total_cost_usd"] == writes["cost_usd"]
    assert writes["turns"] == 2
    assert re.fullmatch(r"[0-9a-f-]{36}", writes["session_id"])
    assert (tasks["bad-request"]["state"], tasks["bad-request"]["reason"]) == ("failed", "api-error 400")
    assert (tasks["silent"]["state"], tasks["silent"]["reason"]) == ("failed", "stalled")
    assert all("2.1.328" in part for part in view["agent_version"].split("; "))
    assert view["agent_version"].count("2.1.328") == 3

    # The raw stream is in the log, the result line unchanged.
    log = lab.pagent("logs", str(lab.plan), "writes")
    result_lines = [line for line in log.splitlines() if _event_type(line) == "result"]
    assert len(result_lines) == 1
    assert json.loads(result_lines[0])["session_id"] == writes["session_id"]
    assert result_lines[0].endswith("}")  # the whole line, as the CLI printed it
    silent_log = lab.pagent("logs", str(lab.plan), "silent")
    assert "[pagent] stopping the agent: stalled" in silent_log

    # The summary shows the run's total cost.
    assert f"${view['cost_usd']:.4f}" in done.stdout
    assert view["cost_usd"] == pytest.approx(writes["cost_usd"])


def test_5xx_storm_shows_api_retries_live(lab: Lab) -> None:
    """While the CLI retries 500s, ``pagent status`` says so; the task then fails with the status."""
    server = lab.agent("cc-500", when_exhausted=ErrorReply(500, "boom"), max_retries=3)
    # The heartbeat (and so the live status) is stored every stall_timeout / 4 seconds.
    lab.write_plan([{"id": "storm", "agent": "cc-500", "prompt": "Anything.", "stall_timeout": "5s"}])
    started = time.monotonic()
    proc = lab.popen()
    seen: list[str] = []
    try:
        while proc.poll() is None and time.monotonic() - started < RUN_TIMEOUT:
            with contextlib.suppress(AssertionError, json.JSONDecodeError):
                live = lab.tasks()["storm"].get("live") or {}
                if live.get("status") and live["status"] not in seen:
                    seen.append(live["status"])
            time.sleep(0.1)
        _, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    took = time.monotonic() - started
    print(f"\n500 storm: {took:.1f}s, live statuses seen: {seen}")
    assert proc.returncode == 1
    assert seen, "no live status was ever stored"
    assert all(RETRY_STATUS.match(status) for status in seen), seen
    storm = lab.tasks()["storm"]
    assert (storm["state"], storm["reason"]) == ("failed", "api-error 500")
    assert storm["detail"]["api_retries"] == 3
    assert "live" not in storm
    assert "retrying API, 500, attempt 1/3" in stderr  # the event line
    assert len([r for r in server.log if r.script_index is not None]) == 4


def test_permission_denial_is_needs_input_after_one_attempt(lab: Lab) -> None:
    """A Bash call the default mode denies: needs-input, not retried, the call shown to the user."""
    lab.agent(
        "cc-default",
        [run_bash("touch made-by-bash.txt"), TextReply("I could not run the command.")],
        extra_args=(),
    )
    lab.write_plan([{"id": "ask", "agent": "cc-default", "prompt": "Touch a file."}], retries=2)
    done, took = lab.run()
    print(f"\npermission denial: {took:.1f}s")
    assert done.returncode == 1, done.stderr
    task = lab.tasks()["ask"]
    assert (task["state"], task["reason"], task["attempts"]) == ("failed", "needs-input", 1)
    assert not (Path(task["worktree"]) / "made-by-bash.txt").exists()
    (denial,) = task["detail"]["permission_denials"]
    assert (denial["tool_name"], denial["tool_input"]["command"]) == ("Bash", "touch made-by-bash.txt")
    table = lab.pagent("status", str(lab.plan))
    assert "denied Bash: touch made-by-bash.txt" in table
    assert "denied Bash: touch made-by-bash.txt" in done.stdout  # the summary
    run_id = lab.status()["run_id"]
    report = (lab.plan.parent / ".pagent" / "runs" / run_id / "report.html").read_text()
    assert "denied Bash: touch made-by-bash.txt" in report


def test_usage_limit_stops_claude_tasks(lab: Lab) -> None:
    """A usage limit that resets in days: no retry, no further Claude task, exit 1 with a note."""
    reset = int(time.time()) + 10 * 86400
    server = lab.agent(
        "cc-sub",
        when_exhausted=usage_limit_reply(reset),
        api_key=None,
        oauth_token="sk-ant-oat01-fake-token",
    )
    lab.write_plan(
        [
            {"id": "limited", "agent": "cc-sub", "prompt": "Anything."},
            {"id": "next", "agent": "cc-sub", "prompt": "Anything else."},
        ],
        jobs=1,
        retries=2,
    )
    done, took = lab.run()
    print(f"\nusage limit: {took:.1f}s")
    assert done.returncode == 1, done.stderr
    tasks = lab.tasks()
    limited = tasks["limited"]
    assert (limited["state"], limited["reason"], limited["attempts"]) == ("failed", "usage-limit", 1)
    assert limited["detail"]["resets_at"] == reset
    assert limited["detail"]["limit_type"] == "five_hour"
    assert (tasks["next"]["state"], tasks["next"]["attempts"]) == ("not_run", 0)
    assert tasks["next"]["reason"] == "usage-limit"
    note = lab.status()["note"]
    assert "usage-limit" in note
    assert "no further claude task was started" in note
    assert note in done.stdout
    assert len([r for r in server.log if r.script_index is not None]) == 1


@pytest.mark.parametrize("problem", ["api-401", "missing-binary"])
def test_preflight_failure_stops_before_any_worktree(lab: Lab, problem: str) -> None:
    """A preflight that fails exits 1 with one line, before any worktree or branch exists."""
    if problem == "api-401":
        lab.agent(
            "cc",
            when_exhausted=ErrorReply(401, "invalid x-api-key"),
            preflight_scripted=True,
            max_retries=0,
        )
        expected = "pagent: agent 'cc' preflight failed: auth: Invalid API key"
    else:
        lab.agent("cc", command=str(lab.tmp / "no-such-claude"))
        expected = f"pagent: agent 'cc': cannot run '{lab.tmp / 'no-such-claude'}': No such file"
    lab.write_plan([{"id": "never", "agent": "cc", "prompt": "Anything."}])
    branches_before = git(lab.repo, "branch", "--list")
    done, took = lab.run()
    print(f"\npreflight {problem}: {took:.1f}s")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(expected), lines[0]
    assert not (lab.repo.parent / "repo.worktrees").exists()
    assert git(lab.repo, "branch", "--list") == branches_before
    assert git(lab.repo, "worktree", "list").count("\n") == 1
