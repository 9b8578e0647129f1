"""Notifications through apprise to a real HTTP server on 127.0.0.1, and through a real command.

apprise's generic JSON webhook (``json://127.0.0.1:PORT/path``) posts to the server below, which
records each request; targets that are down or accept and never answer are real sockets too.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import tomli_w

from supervisor.errors import PlanError
from supervisor.handoff import payload
from supervisor.handoff.notify import mask_url, notify, send
from supervisor.handoff.payload import Event
from supervisor.plan.model import NotifyConfig
from supervisor.ui.compose import load_plan
from tests.handoff_fakes import Webhook, hanging_server
from tests.handoff_views import DENIED, finished_run

pytestmark = pytest.mark.slow  # real processes and servers (README, "Tests")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A port whose server accepts every connection and never answers."""
    with hanging_server() as port:
        yield port


@pytest.fixture
def down_port() -> int:
    """A port nothing listens on (connection refused)."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port: int = probe.getsockname()[1]
    probe.close()
    return port


@pytest.mark.anyio
async def test_run_finished_reaches_the_webhook(tmp_path: Path, webhook: Webhook) -> None:
    """A finished run posts title and body, with the versioned payload attached: counts, cost,
    the failed tasks with their reasons (needs-input first), the report path."""
    view = finished_run(tmp_path)
    note = payload.run_finished(view, report=tmp_path / "report.html")
    config = NotifyConfig(urls=(webhook.url(auth="pagent:s3cret-pass@"),))
    (result,) = await notify(config, note)
    assert result.ok, result
    assert "s3cret-pass" not in json.dumps(result.to_dict())
    (request,) = webhook.requests
    assert request["path"] == "/hook"
    assert base64.b64decode(request["headers"]["Authorization"].split()[1]) == b"pagent:s3cret-pass"
    assert request["body"]["title"] == "pagent nightly: 1 of 3 succeeded"
    assert request["body"]["message"] == note.body
    assert request["body"]["type"] == "failure"
    data = webhook.payload()
    assert data["schema"] == "pagent.notification/1"
    assert data["event"] == "run-finished"
    assert data["run"]["counts"] == {"succeeded": 1, "failed": 2}
    assert data["run"]["cost_usd"] == view["cost_usd"] == 1.35
    assert data["run"]["report"] == str(tmp_path / "report.html")
    assert [(t["id"], t["reason"]) for t in data["failed"]] == [
        ("fix-ask", "needs-input"),
        ("fix-verify", "verify"),
    ]
    assert data["failed"][0]["needs_person"] == ["denied Bash: rm -rf build"]
    assert data == json.loads(note.to_json())
    assert len(note.body.splitlines()) <= 6


@pytest.mark.anyio
async def test_needs_input_carries_the_denied_calls(tmp_path: Path, webhook: Webhook) -> None:
    """A needs-input notification names the task and the tool calls Claude was denied."""
    note = payload.needs_input(finished_run(tmp_path), "fix-ask")
    (result,) = await notify(NotifyConfig(urls=(webhook.url(),)), note)
    assert result.ok, result
    assert webhook.requests[0]["body"]["title"] == "pagent nightly: fix-ask needs you"
    assert "denied Bash: rm -rf build" in webhook.requests[0]["body"]["message"]
    data = webhook.payload()
    assert data["event"] == "needs-input"
    assert data["task"]["id"] == "fix-ask"
    assert data["task"]["permission_denials"] == [DENIED]
    assert data["task"]["needs_person"] == ["denied Bash: rm -rf build"]


@pytest.mark.anyio
async def test_auth_stop_says_why(tmp_path: Path, webhook: Webhook) -> None:
    """A night stopped by an auth failure says so, with the run's note and how to rerun."""
    view = finished_run(tmp_path, stopped="auth")
    note = payload.stopped_early(view, "auth")
    (result,) = await notify(NotifyConfig(urls=(webhook.url(),)), note)
    assert result.ok, result
    assert webhook.requests[0]["body"]["title"] == "pagent nightly: stopped early (auth)"
    data = webhook.payload()
    assert data["event"] == "stopped-early"
    assert data["stop"] == {"reason": "auth", "detail": view["note"]}
    assert "claude agents stopped: auth" in data["body"]
    assert "--retry-failed" in data["body"]


@pytest.mark.anyio
async def test_a_target_that_is_down_is_retried_and_reported(down_port: int) -> None:
    """Connection refused: tried 1 + retries times within the bound, reported as one line."""
    config = NotifyConfig(urls=(f"json://127.0.0.1:{down_port}/tok-SECRET123",), retries=2, timeout=10)
    start = time.monotonic()
    (result,) = await notify(config, payload.check_message("nightly"))
    took = time.monotonic() - start
    assert not result.ok
    assert result.tries == 3
    assert result.error
    assert "\n" not in result.error
    assert "SECRET123" not in json.dumps(result.to_dict()) + result.line()
    assert 2.0 <= took < 10, took  # the two pauses (0.5 s, 1.5 s), well inside the bound


@pytest.mark.anyio
async def test_a_hanging_target_costs_at_most_its_bound(hanging_port: int, webhook: Webhook) -> None:
    """A target that accepts and never answers is given up at the bound; the healthy target in the
    same call is delivered, and the event loop keeps running meanwhile."""
    bound = 2.0
    config = NotifyConfig(urls=(f"json://127.0.0.1:{hanging_port}/x", webhook.url()), timeout=bound)
    gaps: list[float] = []
    results = []

    async def send_it() -> None:
        results.extend(await notify(config, payload.check_message("nightly")))

    start = time.monotonic()
    async with anyio.create_task_group() as tg:
        tg.start_soon(send_it)
        last = time.monotonic()
        while not results:
            await anyio.sleep(0.05)  # a ticker measuring the loop's responsiveness, not a sync
            now = time.monotonic()
            gaps.append(now - last)
            last = now
    took = time.monotonic() - start
    hung, healthy = results
    assert healthy.ok, healthy
    assert not hung.ok
    assert hung.error == f"no answer within {bound:g} s"
    assert bound <= took < bound + 0.5, took
    assert max(gaps) < 0.5, max(gaps)


def test_a_hanging_target_does_not_keep_the_process_alive(hanging_port: int, tmp_path: Path) -> None:
    """The sender's thread ends soon after the bound: a process that notified a hung target exits
    promptly (apprise's socket timeouts are set to the bound)."""
    script = tmp_path / "send.py"
    script.write_text(
        textwrap.dedent(f"""
        import time
        from supervisor.plan.model import NotifyConfig
        from supervisor.handoff.notify import send
        from supervisor.handoff.payload import check_message
        start = time.monotonic()
        config = NotifyConfig(urls=("json://127.0.0.1:{hanging_port}/x",), timeout=1.5)
        (result,) = send(config, check_message("p"))
        print(result.error, round(time.monotonic() - start, 2))
        """)
    )
    start = time.monotonic()
    done = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=60, check=False)
    took = time.monotonic() - start
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("no answer within 1.5 s")
    assert took < 1.5 + 4.0, took  # interpreter start and imports included


def test_command_target_reads_the_payload_on_stdin(tmp_path: Path) -> None:
    """The command target gets the JSON payload on stdin (no shell) and PAGENT_EVENT set."""
    out = tmp_path / "got.json"
    hook = tmp_path / "hook.py"
    hook.write_text(
        "import os, sys\n"
        "data = sys.stdin.read()\n"
        f"open({str(out)!r}, 'w').write(os.environ['PAGENT_EVENT'] + '\\n' + data)\n"
    )
    note = payload.run_finished(finished_run(tmp_path))
    config = NotifyConfig(command=(sys.executable, str(hook)))
    (result,) = send(config, note)
    assert result.ok, result
    assert result.target == f"command {Path(sys.executable).name}"
    event, data = out.read_text().split("\n", 1)
    assert event == "run-finished"
    assert json.loads(data) == note.payload


def test_command_target_failures_are_one_line(tmp_path: Path) -> None:
    """A command that fails reports its exit and last stderr line; one that hangs is killed at the
    bound, its whole process group with it."""
    failing = (sys.executable, "-c", "import sys; sys.stderr.write('first\\nboom\\n'); sys.exit(3)")
    (result,) = send(NotifyConfig(command=failing, retries=0), payload.check_message("p"))
    assert not result.ok
    assert result.error == f"{Path(sys.executable).name}: exit 3: boom"

    pids = tmp_path / "pids"
    hanging = (
        sys.executable,
        "-c",
        "import os, subprocess, sys, time\n"
        "child = subprocess.Popen(['sleep', '600'])\n"
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{child.pid}}')\n"
        "time.sleep(600)\n",
    )
    start = time.monotonic()
    (result,) = send(NotifyConfig(command=hanging, timeout=1.5, retries=0), payload.check_message("p"))
    assert time.monotonic() - start < 1.5 + 0.5
    assert not result.ok
    deadline = time.monotonic() + 5
    while any(_alive(int(pid)) for pid in pids.read_text().split()):
        assert time.monotonic() < deadline, "the hook's processes outlived the bound"
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_events_are_filtered_by_on(webhook: Webhook, tmp_path: Path) -> None:
    """``task-failed`` is off by default; a test message is always sent; no target, no send."""
    view = finished_run(tmp_path)
    config = NotifyConfig(urls=(webhook.url(),))
    assert send(config, payload.task_failed(view, "fix-verify")) == []
    assert webhook.requests == []
    assert send(NotifyConfig(), payload.check_message("p")) == []
    (result,) = send(config, payload.check_message("p"))
    assert result.ok
    wanting = NotifyConfig(urls=(webhook.url(),), events=frozenset({Event.RUN_FINISHED, Event.TASK_FAILED}))
    (result,) = send(wanting, payload.task_failed(view, "fix-verify"))
    assert result.ok
    assert webhook.payload(1)["task"]["id"] == "fix-verify"
    assert webhook.requests[1]["body"]["title"] == "pagent nightly: fix-verify failed (verify)"


@pytest.mark.parametrize(
    ("url", "masked", "secrets"),
    [
        (
            "ntfy://alice:hunter22@ntfy.example.com/night-topic",
            "ntfy://***:***@ntfy.example.com/***",
            ["hunter22", "night-topic", "alice"],
        ),
        (
            "ntfys://ntfy.sh/my-secret-topic?priority=high",
            "ntfys://ntfy.sh/***?priority=***",
            ["my-secret-topic"],
        ),
        ("ntfy://my-secret-topic", "ntfy://***", ["my-secret-topic"]),
        (
            "slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ/#general",
            "slack://***/***/***/#***",
            ["T1JJ3T3L2", "A1BRTD4JD", "TIiajkdnlazkcOXrIdevi7FQ"],
        ),
        (
            "https://hooks.slack.com/services/T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ",
            "https://hooks.slack.com/***/***/***/***",
            ["T1JJ3T3L2", "TIiajkdnlazkcOXrIdevi7FQ"],
        ),
        (
            "discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV_js",
            "discord://***/***",
            ["4174216298", "JHMHI8qBe7bk2ZwO5U711o3dV_js"],
        ),
        (
            "json://user:pa55word@127.0.0.1:8080/hook",
            "json://***:***@127.0.0.1:8080/***",
            ["pa55word", "user"],
        ),
        (
            "mailto://bob:app-pass@gmail.com?to=me@example.com",
            "mailto://***:***@gmail.com?to=***",
            ["app-pass", "me@example.com"],
        ),
        ("tgram://123456789:AAH-token/12315544", "tgram://***", ["AAH-token", "12315544"]),
    ],
)
def test_mask_url(url: str, masked: str, secrets: list[str]) -> None:
    """Scheme and a real host name stay; users, passwords, tokens and paths become ***."""
    assert mask_url(url) == masked
    for secret in secrets:
        assert secret not in masked


def _plan(tmp_path: Path, notify: dict[str, Any]) -> Path:
    """A one-task plan with the given ``[notify]`` table."""
    path = tmp_path / "plan.toml"
    table = {"notify": notify, "waves": [{"tasks": [{"id": "t", "prompt": "p", "agent": "demo"}]}]}
    path.write_text(tomli_w.dumps(table))
    return path


def test_config_checks_urls_events_and_keys(tmp_path: Path) -> None:
    """URLs apprise rejects, unknown events and unknown keys are one-line plan errors naming the
    key; the secret in a rejected URL is not in the message."""
    cases = {
        "plan.toml: notify.urls[1]: apprise does not accept 'slack://***'": {
            "urls": ["json://127.0.0.1:1/x", "slack://only-one-token"]
        },
        "plan.toml: notify.urls[0]: apprise does not accept 'nosuch://***'": {"urls": ["nosuch://hunter22"]},
        "plan.toml: notify.on[0]: unknown event 'finished'": {"on": ["finished"]},
        "plan.toml: notify.retry: unknown key": {"retry": 1},
        "plan.toml: notify.timeout: expected a duration > 0, got '0s'": {"timeout": "0s"},
        "plan.toml: notify.retries: expected `int` <= 5, got 9": {"retries": 9},
    }
    for expected, table in cases.items():
        with pytest.raises(PlanError) as caught:
            load_plan(_plan(tmp_path, table))
        message = str(caught.value)
        assert message.startswith(expected), message
        assert "\n" not in message
        assert "only-one-token" not in message
        assert "hunter22" not in message
    plan = load_plan(_plan(tmp_path, {"urls": ["json://127.0.0.1:1/x"], "on": ["task-failed"]}))
    assert plan.notify.events == {Event.RUN_FINISHED, Event.TASK_FAILED}
    assert plan.notify.timeout == 10.0
    assert plan.notify.retries == 2
    assert not plan.publish.enabled
