"""``sandbox = true`` through the installed ``pagent-run`` and ``pagent``, with real bubblewrap.

Issue 16: a sandboxed agent can write only its clone workspace and its own state; the main
repository, its branches, other tasks' workspaces, the user's home and /etc stay as they were;
its commits land on its branch; ``sandbox_network = false`` takes the network away; stop, stall,
timeout, SIGTERM and SIGKILL of the supervisor behave as without the sandbox; ``--retry-failed``
continues in the same clone; ``pagent clean`` removes clones, refusing to drop work; without
bwrap, ``sandbox = true`` is a plan error and ``"auto"`` falls back, saying so.

Everything lives under ``/var/tmp`` rather than pytest's ``/tmp``: the sandbox's ``/tmp`` is
private, and the point is that the main repository and other workspaces are *visible* and
read-only, not merely hidden. Skipped with the reason where bwrap cannot run; required with
``PAGENT_REQUIRE_SANDBOX=1`` (CI).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.launch.sandbox import sandbox_problem
from tests.conftest import GIT_IDENTITY, git, status_json
from tests.hostile import (
    AGENTS,
    ROGUE,
    Reaper,
    ended_within,
    pagent,
    reaping,
    run,
    tasks_by_id,
    wait_for,
    write_plan,
)

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

PROBLEM = sandbox_problem()
JAILBREAK = AGENTS / "jailbreak.py"
NETWORK = """
import socket, sys
try:
    conn = socket.create_connection(("127.0.0.1", int(sys.argv[1])), 5)
    reply = conn.recv(4).decode()
except OSError as exc:
    print("no connection:", exc)
    sys.exit(1)
open("reply.txt", "w").write(reply + "\\n")
print("got", reply)
"""


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    if PROBLEM is None:
        return
    if os.environ.get("PAGENT_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"PAGENT_REQUIRE_SANDBOX=1 but: {PROBLEM}")
    pytest.skip(f"no sandbox on this machine: {PROBLEM}")


@pytest.fixture
def root() -> Iterator[Path]:
    """A directory outside /tmp, removed afterwards."""
    base = Path("/var/tmp") if Path("/var/tmp").is_dir() else Path.home()
    path = Path(tempfile.mkdtemp(prefix="pagent-sandbox-", dir=base)).resolve()
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def main(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The main repository: main, plus a branch ``other`` someone else owns."""
    for key, value in GIT_IDENTITY.items():
        monkeypatch.setenv(key, value)
    path = root / "repo"
    path.mkdir()
    git(path, "init", "--quiet", "--initial-branch=main")
    (path / "README.md").write_text("test repository\n")
    git(path, "add", "README.md")
    git(path, "commit", "--quiet", "-m", "initial commit")
    git(path, "branch", "other")
    return path


@pytest.fixture
def reaper(root: Path) -> Iterator[Reaper]:
    with reaping(root) as started:
        yield started


@contextlib.contextmanager
def server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that answers "pong"; yields its port."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError, OSError):
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(b"pong")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def digest(top: Path, skip: tuple[str, ...] = ()) -> str:
    """A hash of every path, mode and content under ``top`` (symlinks as their target)."""
    sha = hashlib.sha256()
    for path in sorted(top.rglob("*")):
        rel = path.relative_to(top)
        if rel.parts[0] in skip:
            continue
        sha.update(f"{rel}\0{path.lstat().st_mode}\0".encode())
        if path.is_symlink():
            sha.update(str(path.readlink()).encode())
        elif path.is_file():
            sha.update(path.read_bytes())
    return sha.hexdigest()


def branches(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)", "refs/heads/", "refs/tags/")
    return dict(line.split(" ", 1) for line in out.splitlines())


def plan_of(root: Path, repo: Path, tasks: dict[str, dict[str, Any]], **defaults: Any) -> Path:
    """A plan on ``repo`` with the sandbox on (unless ``defaults`` say), clones under root/wt,
    the agents ``jail`` (the hostile one), ``net`` and ``rogue``, HOME = root/home."""
    (root / "home").mkdir(exist_ok=True)
    (root / "out").mkdir(exist_ok=True)
    home = {"HOME": str(root / "home")}
    return write_plan(
        root / "plans",
        repo,
        tasks,
        defaults={"sandbox": True, "sandbox_writable": [f"{root / 'out'}/", "~/.jail/"], **defaults},
        top={"worktree_root": str(root / "wt")},
        agents={
            "jail": {"command": ["{python}", str(JAILBREAK), str(repo)], "env": home},
            "net": {"command": ["{python}", "-c", NETWORK], "env": home},
            "rogue": {"command": ["{python}", str(ROGUE)], "env": home},
        },
    )


def hostile(other_task: str, report: Path, *flags: str) -> dict[str, Any]:
    return {"agent": "jail", "extra_args": [other_task, "other", str(report), *flags]}


DENIED = {
    "write main worktree",
    "create in main worktree",
    "write a ref file in main",
    "write home",
    "write /etc",
    "write another task's workspace",
    "update-ref main",
    "branch -D another branch",
    "push into main",
    "push a new branch",
    "gc --prune=now in main",
    "remount / read-write",
}


def test_done_when_three_sandboxed_tasks_on_clones(root: Path, main: Path) -> None:
    """Issue 16's "Done when": a well-behaved, a hostile and a network task, sandboxed on clones.
    The well-behaved task's commit is on its branch; every hostile write and ref change failed
    and main, the other branches and the main worktree are byte-for-byte unchanged (the hostile
    task's own commit is on its own branch); the network task reached 127.0.0.1; ``pagent
    clean`` removes the clones and keeps every branch; without bwrap the plan exits 2."""
    report = root / "out" / "hostile.json"
    with server() as port:
        plan = plan_of(
            root,
            main,
            {
                "good": {"agent": "rogue", "prompt": "write good.txt good\ncommit good work"},
                "hostile": hostile("good", report),
                "network": {"agent": "net", "extra_args": [str(port)]},
            },
            workspace="clone",
        )
        before = {
            "refs": branches(main),
            "tree": digest(main, skip=(".git",)),
            "git": digest(main / ".git", skip=("objects", "refs", "logs", "packed-refs")),
            "home": digest(root / "home", skip=(".jail",)),
        }
        done = run(plan)
    assert done.returncode == 0, done.stdout + done.stderr
    tasks = tasks_by_id(plan)
    assert {t["state"] for t in tasks.values()} == {"succeeded"}
    assert status_json(plan)["sandbox"] == "bubblewrap"
    good = tasks["good"]["branch"]
    assert git(main, "log", "-1", "--format=%s", good).strip() == "good work"
    assert git(main, "show", f"{good}:good.txt") == "good\n"
    # The hostile agent: every escape denied, its own commit home on its own branch.
    results = json.loads(report.read_text())
    assert {name for name, outcome in results["results"].items() if outcome == "ok"} == set(), results
    assert set(results["results"]) == DENIED
    for name in ("write main worktree", "write home", "write /etc", "write another task's workspace"):
        assert "Read-only file system" in results["results"][name]  # visible, not merely hidden
    assert git(main, "rev-parse", tasks["hostile"]["branch"]).strip() == results["mine"]
    assert git(main, "show", f"{tasks['network']['branch']}:reply.txt") == "pong\n"
    after = branches(main)
    for task in tasks.values():
        after.pop(f"refs/heads/{task['branch']}")
    assert after == before["refs"]  # main, other and nothing new
    assert digest(main, skip=(".git",)) == before["tree"]
    assert digest(main / ".git", skip=("objects", "refs", "logs", "packed-refs")) == before["git"]
    assert digest(root / "home", skip=(".jail",)) == before["home"]
    assert (root / "home" / ".jail").is_dir()  # a sandbox_writable directory, made for it
    assert not Path("/etc/pagent-evil").exists()
    git(main, "fsck", "--no-dangling")
    # clean removes the clones, keeps every branch and pin.
    clones = [Path(t["worktree"]) for t in tasks.values()]
    assert all((path / ".git").is_dir() for path in clones)
    kept = git(main, "for-each-ref", "--format=%(refname) %(objectname)")
    cleaned = pagent("clean", plan)
    assert cleaned.returncode == 0, cleaned.stderr
    assert not any(path.exists() for path in clones)
    now = git(main, "for-each-ref", "--format=%(refname) %(objectname)").splitlines()
    assert set(kept.splitlines()) <= set(now)
    # Without bwrap on PATH the same plan is refused before anything runs.
    bare = root / "bin"
    bare.mkdir()
    for tool in ("git", "env", "setpriv"):
        if (found := shutil.which(tool)) is not None:
            (bare / tool).symlink_to(found)
    refused = pagent_without_bwrap(bare, "validate", plan)
    assert refused.returncode == 2
    assert refused.stderr.startswith("pagent: plan.toml: waves[0].tasks[0].sandbox: no sandbox here:")
    assert "bubblewrap" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def pagent_without_bwrap(bare: Path, *args: str | Path) -> Any:
    """``pagent ARGS`` with a PATH that has git but no bwrap."""
    from tests.conftest import bin_path, cli

    return cli(bin_path("pagent"), *args, env={**os.environ, "PATH": str(bare)})


def test_the_same_hostile_agent_unsandboxed_behaves_as_today(root: Path, main: Path) -> None:
    """Without the sandbox the agent keeps every right of the user (and a worktree by default):
    its ref changes and writes succeed, pagent reports the moved refs, as before issue 16."""
    report = root / "out" / "hostile.json"
    plan = plan_of(
        root, main, {"quiet": {}, "hostile": hostile("quiet", report, "--unconfined")}, sandbox=False
    )
    done = run(plan)
    assert "Traceback" not in done.stderr
    results = json.loads(report.read_text())["results"]
    assert results["update-ref main"] == "ok"
    assert results["write main worktree"] == "ok"
    assert results["write another task's workspace"] == "ok"
    assert "other" not in git(main, "branch", "--list", "other")
    assert status_json(plan)["moved_refs"]
    assert status_json(plan)["sandbox"] is None


def test_without_network_a_loopback_server_is_out_of_reach(root: Path, main: Path) -> None:
    """``sandbox_network = false``: no connection to 127.0.0.1; the same agent without the
    sandbox, and with it but network on, reaches the server."""
    with server() as port:
        net = {"agent": "net", "extra_args": [str(port)]}
        plan = plan_of(
            root,
            main,
            {
                "offline": {**net, "sandbox_network": False},
                "online": net,
                "plain": {**net, "sandbox": False},
            },
        )
        run(plan)
    tasks = tasks_by_id(plan)
    assert tasks["online"]["state"] == tasks["plain"]["state"] == "succeeded"
    assert tasks["offline"]["state"] == "failed"
    assert tasks["offline"]["reason"] == "exit 1"
    assert "no connection" in Path(tasks["offline"]["log"]).read_text()


def no_process_of(root: Path, reaper: Reaper) -> bool:
    return not reaper.leftovers()


def test_stall_and_timeout_stop_the_whole_sandboxed_tree(root: Path, main: Path, reaper: Reaper) -> None:
    """A stopped (silent) agent is ``stalled``, one that sleeps past its time ``timeout``; each
    left a daemon (own session, empty environment) inside the sandbox: none survives."""
    out = root / "out"
    plan = plan_of(
        root,
        main,
        {
            "stalls": {"prompt": f"daemon {out}/d1.pid\nstop-self", "stall_timeout": "1s"},
            "hangs": {"prompt": f"daemon {out}/d2.pid\nsleep 60", "timeout": "2s"},
        },
    )
    done = run(plan)
    assert done.returncode == 1
    tasks = tasks_by_id(plan)
    assert (tasks["stalls"]["reason"], tasks["hangs"]["reason"]) == ("stalled", "timeout")
    assert (out / "d1.pid").exists()
    assert (out / "d2.pid").exists()
    wait_for(lambda: no_process_of(root, reaper), 10, "the sandboxes to be gone")


def test_a_daemon_left_in_the_sandbox_ends_with_its_attempt(root: Path, main: Path, reaper: Reaper) -> None:
    """The subreaper's case (a daemon that scrubbed its cookie and left the session) inside the
    sandbox: the attempt succeeds and the daemon is gone with it, while the run goes on."""
    out = root / "out"
    plan = plan_of(
        root,
        main,
        {
            "a": {"prompt": f"daemon {out}/d.pid\nwrite a.txt a"},
            "b": {"prompt": f"wait-for {out}/d.pid\nsleep 1"},
        },
    )
    done = run(plan)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: no_process_of(root, reaper), 10, "the daemon to be gone")


def test_sigterm_then_retry_failed_continues_in_the_same_clone(
    root: Path, main: Path, reaper: Reaper
) -> None:
    """SIGTERM of pagent-run: the sandboxed agent is stopped (exit 143, ``interrupted``),
    nothing of it is left; ``--retry-failed`` runs it again in the same clone, on top of what
    the first attempt committed."""
    out = root / "out"
    plan = plan_of(
        root, main, {"a": {"prompt": f"write one.txt 1\ncommit first\nwrite {out}/ready x\nsleep 60"}}
    )
    proc = reaper.start(plan)
    wait_for((out / "ready").exists, 30, "the agent to be ready")
    proc.send_signal(signal.SIGTERM)
    assert ended_within(proc, 30) == 143
    wait_for(lambda: no_process_of(root, reaper), 10, "the sandbox to be gone")
    task = tasks_by_id(plan)["a"]
    assert task["state"] == "interrupted"
    first = git(main, "rev-parse", task["branch"]).strip()
    assert git(main, "log", "-1", "--format=%s", first).strip() == "first"
    clone = Path(task["worktree"])
    (out / "ready").unlink()
    plan.write_text(plan.read_text().replace("sleep 60", "write two.txt 2"))
    again = run(plan, "--retry-failed")
    assert again.returncode == 0, again.stdout + again.stderr
    task = tasks_by_id(plan)["a"]
    assert Path(task["worktree"]) == clone
    assert git(main, "show", f"{task['branch']}:one.txt") == "1\n"
    assert git(main, "show", f"{task['branch']}:two.txt") == "2\n"
    assert git(main, "merge-base", "--is-ancestor", first, task["branch"]) == ""


def test_sigkill_of_pagent_run_takes_the_sandbox_and_the_next_run_recovers(
    root: Path, main: Path, reaper: Reaper
) -> None:
    """SIGKILL of the supervisor mid-attempt: the sandbox dies with it (nothing of the agent is
    left); the next ``--retry-failed`` repairs the run and fetches what the killed attempt had
    committed in its clone onto the branch."""
    out = root / "out"
    plan = plan_of(
        root, main, {"a": {"prompt": f"write one.txt 1\ncommit first\nwrite {out}/ready x\nsleep 60"}}
    )
    proc = reaper.start(plan)
    wait_for((out / "ready").exists, 30, "the agent to be ready")
    proc.kill()  # the supervisor alone (the sandbox is in a session of its own)
    proc.wait(10)
    wait_for(lambda: no_process_of(root, reaper), 10, "the sandbox to die with its supervisor")
    plan.write_text(plan.read_text().replace("sleep 60", "write two.txt 2"))
    again = run(plan, "--retry-failed")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "had been stopped without cleanup" in again.stderr
    task = tasks_by_id(plan)["a"]
    assert git(main, "show", f"{task['branch']}:one.txt") == "1\n"
    assert git(main, "show", f"{task['branch']}:two.txt") == "2\n"
    assert task["attempts"] == 2


def test_clean_refuses_clone_work_it_would_lose_unless_forced(root: Path, main: Path) -> None:
    """A clone with uncommitted work (auto-commit off) is kept, one line says why, nothing is
    removed; ``--force`` removes it and every branch stays."""
    plan = plan_of(root, main, {"a": {"prompt": "write a.txt a", "auto_commit": False}, "b": {}})
    run(plan)
    tasks = tasks_by_id(plan)
    refused = pagent("clean", plan)
    assert refused.returncode != 0
    assert "uncommitted changes: a.txt" in refused.stderr
    assert Path(tasks["a"]["worktree"]).exists()
    assert Path(tasks["b"]["worktree"]).exists()
    forced = pagent("clean", plan, "--force")
    assert forced.returncode == 0, forced.stderr
    assert not Path(tasks["a"]["worktree"]).exists()
    assert git(main, "rev-parse", "--verify", tasks["b"]["branch"])


def test_auto_falls_back_without_bwrap_and_says_so(root: Path, main: Path) -> None:
    """``sandbox = "auto"`` where bwrap is missing: validate warns, the run goes on unconfined
    (in clones) and its status says why; ``sandbox = true`` there is refused (exit 2)."""
    bare = root / "bin"
    bare.mkdir()
    for tool in ("git", "env", "setpriv", "sh"):
        if (found := shutil.which(tool)) is not None:
            (bare / tool).symlink_to(found)
    plan = plan_of(root, main, {"a": {"prompt": "write a.txt a"}}, sandbox="auto")
    checked = pagent_without_bwrap(bare, "validate", plan)
    assert checked.returncode == 0, checked.stderr
    assert "sandbox = 'auto' tasks will run unconfined: a" in checked.stderr
    from tests.conftest import bin_path, cli

    done = cli(bin_path("pagent-run"), plan, env={**os.environ, "PATH": str(bare)})
    assert done.returncode == 0, done.stderr
    view = status_json(plan)
    assert view["sandbox"].startswith("off: bubblewrap (bwrap) is not installed")
    assert "ran unconfined" in view["sandbox"]
    assert "sandbox off" in done.stderr
    task = view["tasks"][0]
    assert (Path(task["worktree"]) / ".git").is_dir()  # a clone all the same
    assert git(main, "show", f"{task['branch']}:a.txt") == "a\n"
    strict = plan_of(root, main, {"a": {"prompt": "write a.txt a"}})
    refused = cli(bin_path("pagent-run"), strict, env={**os.environ, "PATH": str(bare)})
    assert refused.returncode == 2
    assert "no sandbox here" in refused.stderr


def test_sandbox_settings_that_cannot_work_are_plan_errors(root: Path, main: Path) -> None:
    """A worktree with the sandbox, ``sandbox_network = false`` without it, a relative writable
    path, a narrowing that names none of the kind's state paths: exit 2, one line each."""
    cases = {
        "workspace": ({"workspace": "worktree"}, "needs workspace = 'clone'"),
        "network": ({"sandbox": False, "sandbox_network": False}, "needs sandbox = true or 'auto'"),
        "relative": ({"sandbox_writable": ["cache/"]}, "expected an absolute path"),
        "narrow": ({"sandbox_writable": ["!~/.claude.json"]}, "takes away none of the agent kind's"),
        "none": ({"isolation": "none"}, "needs isolation = 'worktree'"),
    }
    for name, (settings, message) in cases.items():
        plan = write_plan(
            root / "plans" / name,
            main,
            {"a": {**settings}},
            defaults={"sandbox": settings.get("sandbox", True)},
        )
        done = pagent("validate", plan)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert message in done.stderr, (name, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1, (name, done.stderr)


def test_verify_runs_in_the_sandbox_too(root: Path, main: Path) -> None:
    """``verify`` runs what the agent wrote, so it is confined like the agent: a verify that
    writes into the main worktree fails there (reason ``verify``), one that checks the clone passes."""
    evil = main / "verify-evil"
    plan = plan_of(
        root,
        main,
        {
            "evil": {
                "prompt": "write a.txt a",
                "verify": [sys.executable, "-c", f"open({str(evil)!r}, 'w')"],
            },
            "fine": {"prompt": "write b.txt b", "verify": [sys.executable, "-c", "open('b.txt').read()"]},
        },
    )
    run(plan)
    tasks = tasks_by_id(plan)
    assert (tasks["evil"]["state"], tasks["evil"]["reason"]) == ("failed", "verify")
    assert "Read-only file system" in Path(tasks["evil"]["log"]).read_text()
    assert not evil.exists()
    assert tasks["fine"]["state"] == "succeeded"
