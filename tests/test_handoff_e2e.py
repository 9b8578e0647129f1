"""End to end: the morning hand-off through the installed ``pagent-run`` and ``pagent``.

Real git repositories in ``tmp_path``, with a real bare repository as ``origin``; notifications
through apprise's JSON webhook to a real HTTP server on 127.0.0.1. ``gh`` is a stand-in on PATH
(``tests/handoff_fakes.py``): the GitHub API behind the real one is out of reach here.
"""

from __future__ import annotations

import collections
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import bin_path, cli, git, status_json
from tests.handoff_fakes import Webhook, executable, gh_calls, gh_pull_requests, hanging_server, install_gh
from tests.test_ops import make_plan, wait_for

pytestmark = pytest.mark.slow  # real processes and servers (README, "Tests")

AGENT = Path(__file__).parent / "agents" / "scripted.py"


def bare_origin(tmp_path: Path, repo: Path) -> Path:
    """A bare repository as ``repo``'s ``origin``, holding ``main``; its pre-receive hook logs
    every ref update it receives to ``received.log`` beside it."""
    origin = tmp_path / "origin.git"
    git(tmp_path, "init", "--quiet", "--bare", "--initial-branch=main", str(origin))
    executable(origin / "hooks" / "pre-receive", f"#!/bin/sh\ncat >> {tmp_path / 'received.log'}\n")
    git(repo, "remote", "add", "origin", str(origin))
    git(repo, "push", "--quiet", "origin", "main")
    return origin


def received(tmp_path: Path) -> list[str]:
    """The ref updates ``origin`` received so far."""
    log = tmp_path / "received.log"
    return log.read_text().splitlines() if log.exists() else []


def write_plan(plans: Path, repo: Path, tasks: dict[str, str], tables: str, name: str = "night") -> Path:
    """A plan of one wave whose tasks run ``tests/agents/scripted.py`` (no retries), plus ``tables``."""
    plans.mkdir(parents=True, exist_ok=True)
    lines = [
        f'name = "{name}"\nrepo = "{os.path.relpath(repo, plans)}"\njobs = 3',
        tables,
        '[defaults]\nagent = "fake"\nretries = 0\ntimeout = "1m"',
        '[agents.fake]\ncommand = ["{python}", "' + str(AGENT) + '"]',
        'env = { JOURNAL = "{plan_dir}/journal.jsonl", PLAN_DIR = "{plan_dir}" }',
        '[[waves]]\nname = "one"',
    ]
    lines += [f'[[waves.tasks]]\nid = "{task}"\nprompt = """{prompt}"""' for task, prompt in tasks.items()]
    path = plans / "plan.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def with_gh(tmp_path: Path) -> tuple[dict[str, str], dict[str, Path]]:
    """The environment for the CLI with the stand-in ``gh`` first on PATH, and its record."""
    gh = install_gh(tmp_path / "bin", tmp_path)
    return {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}, gh


def creates(gh: dict[str, Path]) -> list[list[str]]:
    """The ``gh pr create`` calls so far."""
    return [call["argv"] for call in gh_calls(gh) if call["argv"][:2] == ["pr", "create"]]


def test_published_branches_pull_requests_and_the_webhook(tmp_path: Path, repo: Path) -> None:
    """The issue's "done when": every succeeded task's branch is on the bare origin with exactly
    one draft pull request recorded (``publish.pushed``, ``publish.pull_request``), the
    integration branch is pushed, the webhook got a task-failed and a run-finished JSON with the
    counts and the failed task; ``--retry-failed`` and ``pagent publish`` open no second pull
    request and push nothing unchanged."""
    origin = bare_origin(tmp_path, repo)
    env, gh = with_gh(tmp_path)
    hook = Webhook()
    try:
        tables = (
            f'[notify]\nurls = ["{hook.url()}"]\non = ["task-failed"]\ntimeout = "10s"\n'
            '[publish]\nremote = "origin"\npull_request = "draft"\n'
            '[integrate]\nbranch = "integration/night"'
        )
        plan = write_plan(
            tmp_path / "plans", repo, {"a": "plain", "b": "plain", "bad": "fail-unless fixed.flag"}, tables
        )
        first = cli(bin_path("pagent-run"), plan, env=env)
        assert first.returncode == 1, first.stderr
        assert "Traceback" not in first.stderr

        view = status_json(plan)
        tasks = {t["id"]: t for t in view["tasks"]}
        assert {k: t["state"] for k, t in tasks.items()} == {
            "a": "succeeded",
            "b": "succeeded",
            "bad": "failed",
        }
        urls = {}
        for task_id in ("a", "b"):
            task = tasks[task_id]
            pushed, pr = task["publish"]["pushed"], task["publish"]["pull_request"]
            assert (pushed["status"], pushed["ok"], pushed["remote"]) == ("pushed", True, "origin"), pushed
            local = git(repo, "rev-parse", task["branch"]).strip()
            assert pushed["sha"] == local
            assert git(origin, "rev-parse", task["branch"]).strip() == local
            assert pr["status"] == "created"
            assert pr["draft"] is True
            assert pr["url"].startswith("https://github.example/owner/repo/pull/")
            urls[task["branch"]] = pr["url"]
            assert pr["url"] in first.stdout  # the summary shows it
        assert tasks["bad"]["publish"] is None
        assert not git(origin, "branch", "--list", tasks["bad"]["branch"]).strip()
        prs = gh_pull_requests(gh)
        assert {pr["head"]: pr["url"] for pr in prs} == urls
        assert {(pr["base"], pr["draft"]) for pr in prs} == {("main", True)}
        assert all("`bad`" not in pr["body"] and "pagent-run" in pr["body"] for pr in prs)

        integration = view["integration"]
        assert integration["publish"]["pushed"]["ok"], integration
        assert (
            git(origin, "rev-parse", "integration/night").strip()
            == git(repo, "rev-parse", "integration/night").strip()
        )

        assert [p["event"] for p in hook.payloads()] == ["task-failed", "run-finished"]
        failed_note, finished = hook.payloads()
        assert failed_note["task"]["id"] == "bad"
        assert finished["schema"] == "pagent.notification/1"
        assert finished["run"]["run_id"] == view["run_id"]
        assert finished["run"]["counts"] == {"succeeded": 2, "failed": 1}
        assert [(t["id"], t["reason"]) for t in finished["failed"]] == [("bad", "exit 1")]
        assert {entry["id"] for entry in finished["published"]} == {"a", "b"}
        assert Path(finished["run"]["report"]).is_file()
        assert "Hand-off" in Path(finished["run"]["report"]).read_text()
        assert [(n["event"], [r["ok"] for r in n["results"]]) for n in view["notifications"]] == [
            ("task-failed", [True]),
            ("run-finished", [True]),
        ]
        summary = json.loads((Path(finished["run"]["report"]).parent / "summary.json").read_text())
        assert [n["event"] for n in summary["notifications"]] == ["task-failed", "run-finished"]

        (plan.parent / "fixed.flag").write_text("")
        pushes = len(received(tmp_path))
        second = cli(bin_path("pagent-run"), plan, "--retry-failed", env=env)
        assert second.returncode == 0, second.stderr
        view = status_json(plan)
        assert {t["state"] for t in view["tasks"]} == {"succeeded"}
        bad = next(t for t in view["tasks"] if t["id"] == "bad")
        assert bad["publish"]["pull_request"]["status"] == "created"
        heads = collections.Counter(pr["head"] for pr in gh_pull_requests(gh))
        assert len(heads) == 3
        assert set(heads.values()) == {1}
        assert len(creates(gh)) == 3
        # The retry pushed bad's branch and the integration branch (which merged it), nothing else.
        new = received(tmp_path)[pushes:]
        assert sorted(line.split()[2] for line in new) == sorted(
            [f"refs/heads/{bad['branch']}", "refs/heads/integration/night"]
        )
        assert hook.payloads()[-1]["event"] == "run-finished"
        assert hook.payloads()[-1]["run"]["counts"] == {"succeeded": 3}

        pushes = len(received(tmp_path))
        by_hand = cli(bin_path("pagent"), "publish", plan, env=env)
        assert by_hand.returncode == 0, by_hand.stderr
        assert "up-to-date" in by_hand.stdout
        assert len(by_hand.stdout.strip().splitlines()) == 1 + 3 + 1  # header, tasks, integration
        assert len(received(tmp_path)) == pushes
        assert len(creates(gh)) == 3

        told = cli(bin_path("pagent"), "notify", plan, env=env)
        assert told.returncode == 0, told.stderr
        assert told.stdout.strip() == f"notify json://127.0.0.1:{hook.port}/***: ok"
        assert hook.payloads()[-1]["event"] == "run-finished"
        assert len(status_json(plan)["notifications"]) == 4  # task-failed, 2 x run-finished, by hand
    finally:
        hook.close()


def _timed_run(plan: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.monotonic()
    done = cli(bin_path("pagent-run"), plan, env=env)
    return done, time.monotonic() - start


def test_a_rejected_push_and_a_hanging_target_change_nothing_else(tmp_path: Path, repo: Path) -> None:
    """Someone else's branch where a task pushes: the push is rejected and recorded, the task
    stays succeeded and the exit code 0. A notification target that accepts and never answers
    adds at most its bound to the run's wall time (measured against the same run notifying only
    a healthy target); the healthy target still gets the notification, the failure is one masked line."""
    origin = bare_origin(tmp_path, repo)
    other = tmp_path / "other"
    git(tmp_path, "clone", "--quiet", str(origin), str(other))
    git(other, "switch", "--quiet", "-c", "pagent/hung/a")
    (other / "theirs.txt").write_text("someone else's work\n")
    git(other, "add", "theirs.txt")
    git(other, "commit", "--quiet", "-m", "theirs")
    git(other, "push", "--quiet", "origin", "pagent/hung/a")
    theirs = git(origin, "rev-parse", "pagent/hung/a").strip()
    env = dict(os.environ)
    tasks = {"a": "plain", "b": "plain"}
    publish = '[publish]\nremote = "origin"'
    bound = 3.0
    hook = Webhook()
    try:
        # The baseline: the same run notifying the healthy target only (apprise loaded, one send).
        healthy = f'[notify]\nurls = ["{hook.url()}"]\ntimeout = "{bound:g}s"\nretries = 0\n{publish}'
        base_plan = write_plan(tmp_path / "base", repo, tasks, healthy, name="base")
        baseline, base_took = _timed_run(base_plan, env)
        assert baseline.returncode == 0, baseline.stderr
        with hanging_server() as port:
            secret = "tok-9f8e7d6c5b"
            urls = f'["json://127.0.0.1:{port}/{secret}", "{hook.url()}"]'
            tables = f'[notify]\nurls = {urls}\ntimeout = "{bound:g}s"\nretries = 0\n{publish}'
            plan = write_plan(tmp_path / "hung", repo, tasks, tables, name="hung")
            done, took = _timed_run(plan, env)
        assert done.returncode == 0, done.stderr
        added = took - base_took
        print(f"hung notification target (bound {bound:g} s): run took {took:.2f} s, {added:.2f} s more")
        assert added < bound + 2.0, (took, base_took)  # generous: a shared 2-core machine
        assert took >= bound  # the run did wait for the hung target, up to the bound

        view = status_json(plan)
        tasks_view = {t["id"]: t for t in view["tasks"]}
        assert {t["state"] for t in tasks_view.values()} == {"succeeded"}
        rejected = tasks_view["a"]["publish"]["pushed"]
        assert (rejected["status"], rejected["detail"], rejected["ok"]) == (
            "rejected",
            "rejected (non-fast-forward)",
            False,
        )
        assert git(origin, "rev-parse", "pagent/hung/a").strip() == theirs  # never forced
        assert tasks_view["b"]["publish"]["pushed"]["status"] == "pushed"
        assert "rejected (non-fast-forward)" in done.stderr

        (sent,) = view["notifications"]
        results = {r["target"]: r for r in sent["results"]}
        hung = results[f"json://127.0.0.1:{port}/***"]
        assert (hung["ok"], hung["error"]) == (False, f"no answer within {bound:g} s")
        assert results[f"json://127.0.0.1:{hook.port}/***"]["ok"]
        assert hook.payloads()[-1]["event"] == "run-finished"
        failures = [line for line in done.stderr.splitlines() if "notification failed" in line]
        assert len(failures) == 1, done.stderr
        assert f"no answer within {bound:g} s" in failures[0]
        report = next((plan.parent / ".pagent" / "runs").glob("*/report.html")).read_text()
        assert f"no answer within {bound:g} s" in report  # rewritten once the notification was sent
        status_text = cli(bin_path("pagent"), "status", plan).stdout
        assert "notify failed: run-finished" in status_text
        assert "rejected: rejected (non-fast-forward)" in status_text
        state = plan.parent / ".pagent"
        for where in (done.stdout, done.stderr, json.dumps(view), status_text):
            assert secret not in where
        for path in state.rglob("*"):
            if path.is_file():
                assert secret.encode() not in path.read_bytes(), path
    finally:
        hook.close()


def test_a_missing_remote_warns_at_validate_and_stops_the_run(tmp_path: Path, repo: Path) -> None:
    """No remote 'origin': ``pagent validate`` warns and exits 0; ``pagent-run`` exits 2 with one
    line before anything is created."""
    plan = write_plan(tmp_path / "plans", repo, {"a": "plain"}, '[publish]\nremote = "origin"')
    checked = cli(bin_path("pagent"), "validate", plan)
    assert checked.returncode == 0, checked.stderr
    warning = f"publish.remote: no remote 'origin' in {repo} (pagent-run refuses to start)"
    assert checked.stderr.strip() == f"pagent: warning: plan.toml: {warning}"
    branches = git(repo, "branch", "--list").strip()
    done = cli(bin_path("pagent-run"), plan)
    assert done.returncode == 2
    assert done.stderr.strip() == f"pagent: plan.toml: publish.remote: no remote 'origin' in {repo}"
    assert not (plan.parent / ".pagent").exists()
    assert git(repo, "branch", "--list").strip() == branches
    assert cli(bin_path("pagent"), "publish", plan).returncode == 2


def test_notify_test_and_refusals_while_a_run_is_active(tmp_path: Path, repo: Path) -> None:
    """``pagent notify --test`` reaches every target (exit 1 when one is down); ``pagent publish``
    and ``pagent notify`` refuse with 75 while a run of the plan holds its lock."""
    hook = Webhook()
    try:
        with hanging_server() as port:
            pass  # closed again: nothing listens there any more
        bare_origin(tmp_path, repo)
        extra = f'[notify]\nurls = ["{hook.url()}"]\n[publish]\nremote = "origin"'
        plan = make_plan(tmp_path, repo, extra=extra, hold=True)
        tested = cli(bin_path("pagent"), "notify", plan, "--test")
        assert tested.returncode == 0, tested.stderr
        assert tested.stdout.strip() == f"notify json://127.0.0.1:{hook.port}/***: ok"
        assert hook.payloads()[-1]["event"] == "test"
        down = plan.read_text().replace(hook.url(), f"json://127.0.0.1:{port}/x")
        down_plan = plan.with_name("down.toml")
        down_plan.write_text(down)
        failed = cli(bin_path("pagent"), "notify", down_plan, "--test")
        assert failed.returncode == 1
        assert failed.stdout.startswith(f"notify json://127.0.0.1:{port}/***: ")

        running = subprocess.Popen(
            [bin_path("pagent-run"), plan, "-q"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
        )
        try:
            wait_for(plan.parent / "started")
            for command in ("publish", "notify"):
                refused = cli(bin_path("pagent"), command, plan)
                assert refused.returncode == 75, (command, refused.stderr)
                assert f"plan.toml: cannot {command}: another run is active" in refused.stderr
        finally:
            (plan.parent / "release").write_text("")
            _, err = running.communicate(timeout=60)
        assert running.returncode == 0, err
        assert [p["event"] for p in hook.payloads()] == ["test", "run-finished"]
    finally:
        hook.close()
