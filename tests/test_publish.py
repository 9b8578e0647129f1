"""Publishing to a real bare repository as ``origin``, and pull requests through a stand-in ``gh``.

The pushes are real ``git push`` runs into a bare repository in ``tmp_path``. The GitHub API
behind ``gh`` is out of reach here (no network), so ``gh`` is a stand-in script on PATH: it
records its argv and environment, emulates ``gh pr create`` (prints the new URL; refuses a second
pull request for a head like gh does) and ``gh pr list --head B --json url`` from its own record.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import tomli_w

from supervisor.errors import PlanError
from supervisor.handoff.publish import PushStatus, mask_credentials, push_branch
from supervisor.handoff.pullrequest import (
    PullRequestStatus,
    integration_body,
    open_pull_request,
    pull_request_body,
    pull_request_title,
)
from supervisor.plan.model import READY_COMMAND, PublishConfig
from supervisor.plan.outbound import publish_config
from supervisor.plan.schema import PublishTable
from supervisor.ui.compose import load_plan
from supervisor.workspace.git import remote_problem
from tests.conftest import git
from tests.handoff_fakes import executable, gh_calls, install_gh
from tests.handoff_views import finished_run

pytestmark = pytest.mark.slow  # real processes and servers (README, "Tests")

BRANCH = "pagent/nightly/fix-ok"
PROMPT = "# Fix GetDbClient error handling\n\nIt swallows the error.\nReturn it instead."


def _commit(repo: Path, name: str) -> str:
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-q", "--no-verify", "-m", f"add {name}")
    return git(repo, "rev-parse", "HEAD").strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on ``main`` with task branch ``BRANCH`` one commit ahead, and a bare
    ``origin`` that has ``main`` only; the bare repo logs every push its pre-receive hook sees."""
    bare = tmp_path / "origin.git"
    git(tmp_path, "init", "-q", "--bare", "-b", "main", str(bare))
    executable(bare / "hooks" / "pre-receive", f"#!/bin/sh\ncat >> {tmp_path / 'received.log'}\n")
    work = tmp_path / "repo"
    git(tmp_path, "init", "-q", "-b", "main", str(work))
    _commit(work, "base.txt")
    git(work, "remote", "add", "origin", str(bare))
    git(work, "push", "-q", "origin", "main")
    git(work, "switch", "-q", "-c", BRANCH)
    _commit(work, "fix.txt")
    return work


def _received(repo: Path) -> list[str]:
    """The ref updates the remote's pre-receive hook saw, one per push."""
    log = repo.parent / "received.log"
    return log.read_text().splitlines() if log.exists() else []


def test_a_branch_is_pushed_and_again_is_a_no_op(repo: Path) -> None:
    """The first push creates the remote branch; the second finds the remote has the commit and
    sends nothing (the remote's hook sees one push, not two)."""
    sha = git(repo, "rev-parse", BRANCH).strip()
    first = push_branch(repo, "origin", BRANCH)
    assert first.status is PushStatus.PUSHED, first
    assert (first.sha, first.remote_sha) == (sha, None)
    assert git(repo.parent / "origin.git", "rev-parse", BRANCH).strip() == sha
    second = push_branch(repo, "origin", BRANCH)
    assert second.status is PushStatus.UP_TO_DATE, second
    assert second.remote_sha == sha
    assert len([line for line in _received(repo) if BRANCH in line]) == 1
    assert second.to_dict()["status"] == "up-to-date"
    newer = _commit(repo, "more.txt")
    third = push_branch(repo, "origin", BRANCH)
    assert third.status is PushStatus.PUSHED
    assert (third.remote_sha, third.sha) == (sha, newer)


def test_a_rejected_push_is_recorded_not_raised(repo: Path, tmp_path: Path) -> None:
    """Someone else moved the remote branch: the push is rejected as non-fast-forward, reported,
    and the remote keeps their commit (never forced)."""
    assert push_branch(repo, "origin", BRANCH).ok
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "-b", BRANCH, str(tmp_path / "origin.git"), str(other))
    theirs = _commit(other, "theirs.txt")
    git(other, "push", "-q", "origin", BRANCH)
    _commit(repo, "ours.txt")
    result = push_branch(repo, "origin", BRANCH)
    assert result.status is PushStatus.REJECTED, result
    assert result.detail == "rejected (non-fast-forward)"
    assert not result.ok
    assert git(tmp_path / "origin.git", "rev-parse", BRANCH).strip() == theirs


def test_client_hooks_do_not_run(repo: Path, tmp_path: Path) -> None:
    """A pre-push hook and a reference-transaction hook that would hang are not run."""
    ran = tmp_path / "hook-ran"
    hook = f"#!/bin/sh\ntouch {ran}\nsleep 600\n"
    hooks = repo / ".git" / "hooks"
    executable(hooks / "pre-push", hook)
    executable(hooks / "reference-transaction", hook)
    start = time.monotonic()
    result = push_branch(repo, "origin", BRANCH, timeout=30)
    assert result.status is PushStatus.PUSHED, result
    assert time.monotonic() - start < 10
    assert not ran.exists()


def test_a_hanging_remote_is_stopped_at_the_timeout(repo: Path, tmp_path: Path) -> None:
    """A remote whose hook hangs: the push is stopped at its timeout, every process it started
    (the remote's hook included) is killed, and the result says so."""
    pid_file = tmp_path / "hook.pid"
    executable(
        tmp_path / "origin.git" / "hooks" / "pre-receive",
        f"#!/bin/sh\nsleep 600 &\necho $! > {pid_file}\nwait\n",
    )
    start = time.monotonic()
    result = push_branch(repo, "origin", BRANCH, timeout=2)
    took = time.monotonic() - start
    assert result.status is PushStatus.ERROR, result
    assert result.detail == "git push: no answer within 2 s (stopped)"
    assert took < 2 + 2, took  # ls-remote and rev-parse included
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{pid}").exists() and "Z" not in _state(pid):
        assert time.monotonic() < deadline, "the remote's hook outlived the push"
        time.sleep(0.05)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return "Z"


def test_remote_problems_are_one_line(repo: Path) -> None:
    """An unknown remote is named; an unreachable one is an error result with credentials masked."""
    assert remote_problem(repo, "origin") is None
    assert remote_problem(repo, "upstream") == f"no remote 'upstream' in {repo}"
    assert push_branch(repo, "upstream", BRANCH).status is PushStatus.ERROR
    git(repo, "remote", "add", "secret", "https://bob:tok3n-XYZ@127.0.0.1:1/x.git")
    result = push_branch(repo, "secret", BRANCH, timeout=20)
    assert result.status is PushStatus.ERROR
    assert result.detail is not None
    assert result.detail.startswith("git ls-remote: ")
    assert "tok3n-XYZ" not in json.dumps(result.to_dict())
    assert push_branch(repo, "origin", "no/such/branch").detail == "no local branch 'no/such/branch'"
    # git strips credentials from most of its messages itself; pagent masks any that remain.
    leaked = "fatal: unable to access 'https://bob:tok3n-XYZ@git.example/x.git/': 403"
    assert mask_credentials(leaked) == "fatal: unable to access 'https://***@git.example/x.git/': 403"


@pytest.fixture
def gh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """The stand-in ``gh`` first on PATH; returns its record (PRs) and call log paths."""
    bin_dir = tmp_path / "bin"
    paths = install_gh(bin_dir, tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return paths


@pytest.fixture
def task(tmp_path: Path) -> dict[str, Any]:
    """The status view of the succeeded task ``fix-ok`` of a real finished run."""
    state = tmp_path / "state"
    state.mkdir()
    found: dict[str, Any] = next(t for t in finished_run(state)["tasks"] if t["id"] == "fix-ok")
    return found


def _open(
    repo: Path, config: PublishConfig, tmp_path: Path, task: dict[str, Any], recorded: str | None = None
) -> Any:
    """Ask for the pull request of ``BRANCH`` with pagent's title and body for ``task``."""
    return open_pull_request(
        repo,
        config,
        branch=BRANCH,
        base="main",
        title=pull_request_title("fix-ok", PROMPT),
        body=pull_request_body(task, PROMPT, base="main", run_id="20261124-020000.123-ab12"),
        body_file=tmp_path / "run" / "publish" / "fix-ok.md",
        recorded=recorded,
    )


def test_a_draft_pull_request_is_opened_once(
    repo: Path, tmp_path: Path, gh: dict[str, Path], task: dict[str, Any]
) -> None:
    """The default command opens a draft with pagent's body; asking again reuses the URL that
    ``gh pr list`` names, and a recorded URL asks nothing at all."""
    assert push_branch(repo, "origin", BRANCH).ok
    config = publish_config(PublishTable(pull_request="draft"))
    first = _open(repo, config, tmp_path, task)
    assert first.status is PullRequestStatus.CREATED, first
    assert first.url == "https://github.example/owner/repo/pull/1"
    assert first.to_dict()["draft"] is True
    body_file = tmp_path / "run" / "publish" / "fix-ok.md"
    assert [c["argv"] for c in gh_calls(gh)] == [
        ["pr", "list", "--head", BRANCH, "--state", "all", "--json", "url"],
        ["pr", "create", "--draft", "--head", BRANCH, "--base", "main", "--title",
         "fix-ok: Fix GetDbClient error handling", "--body-file", str(body_file)],
    ]  # fmt: skip
    assert {c["prompt_disabled"] for c in gh_calls(gh)} == {"1"}
    (pr,) = json.loads(gh["record"].read_text())
    body = pr["body"]
    expected = [
        "> # Fix GetDbClient error handling",
        "1 commits, 2 files, +10 -3",
        "| verify | passed |",
        "| cost | $0.25 |",
        "Done: handled the error.",
        "`pagent/nightly/fix-ok` into `main`",
    ]
    for part in expected:
        assert part in body, (part, body)

    again = _open(repo, config, tmp_path, task)
    assert again.status is PullRequestStatus.EXISTING
    assert again.url == first.url
    assert [c["argv"][:2] for c in gh_calls(gh)] == [["pr", "list"], ["pr", "create"], ["pr", "list"]]
    kept = _open(repo, config, tmp_path, task, recorded=first.url)
    assert (kept.status, kept.url) == (PullRequestStatus.EXISTING, first.url)
    assert len(gh_calls(gh)) == 3
    assert len(json.loads(gh["record"].read_text())) == 1


def test_ready_and_refusals(
    repo: Path, tmp_path: Path, gh: dict[str, Path], task: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ready`` drops ``--draft``; without a list command gh's own "already exists" refusal
    yields the existing URL; a failing gh is an error result and nothing is created."""
    ready = publish_config(PublishTable(pull_request="ready", list_command=[]))
    created = _open(repo, ready, tmp_path, task)
    assert created.status is PullRequestStatus.CREATED
    assert "--draft" not in gh_calls(gh)[-1]["argv"]
    assert json.loads(gh["record"].read_text())[0]["draft"] is False
    refused = _open(repo, ready, tmp_path, task)
    assert (refused.status, refused.url) == (PullRequestStatus.EXISTING, created.url)

    monkeypatch.setenv("GH_STAND_IN_FAIL", "1")
    failed = _open(repo, PublishConfig(remote="origin", pull_request="draft"), tmp_path, task)
    assert failed.status is PullRequestStatus.ERROR
    assert failed.url is None
    assert (
        failed.detail
        == "listing pull requests: exit 1: HTTP 401: Bad credentials (https://api.github.com/graphql)"
    )
    assert gh_calls(gh)[-1]["argv"][:2] == ["pr", "list"]


def test_gh_missing_is_an_error(
    repo: Path, tmp_path: Path, task: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No ``gh`` on PATH: one line saying so, no exception."""
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    result = _open(repo, PublishConfig(remote="origin", pull_request="draft"), tmp_path, task)
    assert result.status is PullRequestStatus.ERROR
    assert result.detail == "cannot start gh: No such file or directory"


def test_integration_body_lists_the_merges() -> None:
    """The integration pull request names each task branch and whether it merged."""
    view = {
        "run_id": "r1",
        "integration": {
            "branch": "pagent/nightly",
            "merges": [
                {
                    "task": "a",
                    "branch": "pagent/nightly/a",
                    "merged": True,
                    "conflicts": [],
                    "commit": "c",
                    "error": None,
                },
                {
                    "task": "b",
                    "branch": "pagent/nightly/b",
                    "merged": False,
                    "conflicts": ["x.py"],
                    "commit": None,
                    "error": None,
                },
            ],
        },
    }
    body = integration_body(view, base="main")
    assert "Integration branch `pagent/nightly` of run `r1`, into `main`." in body
    assert "| `a` | `pagent/nightly/a` | merged |" in body
    assert "| `b` | `pagent/nightly/b` | not merged: x.py |" in body


def test_publish_config_defaults_and_placeholders() -> None:
    """``ready`` picks gh's command without ``--draft``; an unknown placeholder is a plan error."""
    assert publish_config(PublishTable(pull_request="ready")).command == READY_COMMAND
    assert "--draft" not in READY_COMMAND
    with pytest.raises(ValueError, match=r"^publish\.command\[1\]: unknown placeholder \{head\}"):
        publish_config(PublishTable(command=["gh", "{head}"]))


def _plan_with(tmp_path: Path, publish: dict[str, Any]) -> Path:
    """A one-task plan with the given ``[publish]`` table."""
    path = tmp_path / "plan.toml"
    task = {"id": "t", "prompt": "p", "agent": "demo"}
    path.write_text(tomli_w.dumps({"publish": publish, "waves": [{"tasks": [task]}]}))
    return path


def test_publish_table_errors_are_one_line(tmp_path: Path) -> None:
    """Bad ``[publish]`` tables are plan errors naming the key; a good one loads with defaults."""
    cases = {
        "plan.toml: publish.remotes: unknown key": {"remotes": "origin"},
        "plan.toml: publish.pull_request: invalid enum value 'yes'": {"pull_request": "yes"},
        "plan.toml: publish.pull_request_for: 'integration' needs an [integrate] branch": {
            "pull_request": "draft",
            "pull_request_for": "integration",
        },
        "plan.toml: publish.base: 'a..b' must not contain '..'": {"base": "a..b"},
        "plan.toml: publish.list_command[3]: unknown placeholder {title}": {
            "list_command": ["gh", "pr", "list", "{title}"]
        },
        "plan.toml: publish.timeout: expected a duration > 0, got 0": {"timeout": 0},
    }
    for expected, table in cases.items():
        with pytest.raises(PlanError) as caught:
            load_plan(_plan_with(tmp_path, table))
        assert str(caught.value).startswith(expected), str(caught.value)
    publish = load_plan(_plan_with(tmp_path, {"pull_request": "ready"})).publish
    assert (publish.remote, publish.pull_request, publish.auto) == ("origin", "ready", True)
    assert (publish.timeout, publish.command) == (120, READY_COMMAND)
