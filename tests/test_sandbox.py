"""Real bubblewrap: what a sandboxed command cannot touch, and that the supervisor still controls it.

Every test runs ``wrap(...)`` for real (``supervisor.launch.sandbox``), on clones made by
``supervisor.workspace.clone``. Where bwrap cannot run they are skipped with the reason
``sandbox_problem()`` gives; with ``PAGENT_REQUIRE_SANDBOX=1`` (CI) they fail instead. The same
through ``pagent-run``: ``tests/test_sandbox_e2e.py``.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import psutil
import pytest

import supervisor
from supervisor.launch import proctree
from supervisor.launch.sandbox import SandboxError, SandboxPolicy, sandbox_problem, wrap
from supervisor.workspace import clone
from supervisor.workspace.clone import CloneError
from tests.claude_cli import STREAM_JSON_ARGS, claude_env, ensure_claude_cli
from tests.conftest import GIT_IDENTITY, git
from tests.fake_anthropic import FakeAnthropic, TextReply, run_bash, write_file

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

PROBLEM = sandbox_problem()


@dataclass(frozen=True)
class Made:
    path: Path
    branch: str


def prepare_clone(repo: Path, path: Path, branch: str, start: str) -> Made:
    """The task branch at ``start`` and its clone, as ``Clones.prepare`` makes them."""
    git(repo, "branch", branch, start)
    clone.make_clone(repo, path, branch)
    return Made(path, branch)


def fetch_back(repo: Path, made: Made, pin: str) -> str | None:
    """The clone's work pinned at ``pin`` and put on its branch; the branch's commit then."""
    mine, _, _ = clone.fetch_pins(repo, made.path, made.branch, pin)
    assert mine is not None
    assert clone.integrate(repo, made.branch, mine, git(repo, "rev-parse", "main").strip())
    return mine


@pytest.fixture(autouse=True)
def _needs_bwrap() -> None:
    if PROBLEM is None:
        return
    if os.environ.get("PAGENT_REQUIRE_SANDBOX") == "1":
        pytest.fail(f"PAGENT_REQUIRE_SANDBOX=1 but: {PROBLEM}")
    pytest.skip(f"no sandbox on this machine: {PROBLEM}")


def poll(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.02)


def run(argv: tuple[str, ...], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL, env=env, check=False
    )


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


def refs(repo: Path) -> dict[str, str]:
    out = git(repo, "for-each-ref", "--format=%(refname) %(objectname)")
    return dict(line.split(" ", 1) for line in out.splitlines())


HOSTILE = r"""
import json, os, signal, subprocess, sys
main, other, home, victim = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
results = {}

def attempt(name, action):
    try:
        action()
        results[name] = "ok"
    except Exception as exc:
        results[name] = f"denied: {exc}"

def write(path):
    with open(path, "w") as file:
        file.write("evil\n")

def git(*args, cwd="."):
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-200:]}")
    return done.stdout.strip()

attempt("edit main worktree", lambda: write(f"{main}/README.md"))
attempt("create in main worktree", lambda: write(f"{main}/evil.txt"))
attempt("write a ref file in main", lambda: write(f"{main}/.git/refs/heads/evil"))
attempt("write home", lambda: write(f"{home}/evil"))
attempt("write /etc", lambda: write("/etc/pagent-evil"))
attempt("write other workspace", lambda: write(f"{other}/evil"))
attempt("signal a process outside", lambda: os.kill(victim, signal.SIGKILL))
attempt("write own state dir", lambda: write(f"{home}/.claude/state.json"))
def own_work():
    write("mine.txt")
    git("add", "mine.txt")
    git("commit", "-qm", "hostile work")

attempt("own edit and commit", own_work)
mine = git("rev-parse", "HEAD")
attempt("update-ref main", lambda: git("update-ref", "refs/heads/main", mine, cwd=main))
attempt("branch -D other", lambda: git("branch", "-D", "other", cwd=main))
attempt("push into main", lambda: git("push", "--force", main, "HEAD:refs/heads/main"))
attempt("push a new branch", lambda: git("push", "origin", "HEAD:refs/heads/evil"))
attempt("gc --prune=now in main", lambda: git("gc", "--prune=now", cwd=main))
attempt("own gc --prune=now", lambda: git("gc", "--quiet", "--prune=now"))
# Last, so that a sandbox that let it through could not change anything the checks above saw.
remount = ["mount", "-o", "remount,rw,bind", "/"]
attempt("remount / read-write", lambda: subprocess.run(remount, check=True, capture_output=True))
print(json.dumps({"results": results, "mine": mine}))
"""
ALLOWED = {"write own state dir", "own edit and commit", "own gc --prune=now"}


def test_a_hostile_agent_changes_nothing_but_its_own_clone(repo: Path, tmp_path: Path) -> None:
    """Every write outside its clone and state dir fails; its commit lands on its branch only."""
    git(repo, "branch", "other")
    (repo / ".git" / "info" / "exclude").write_text(".pagent/\n")
    base = git(repo, "rev-parse", "HEAD").strip()
    mine = prepare_clone(repo, repo / ".pagent" / "clones" / "a", "pagent/t/a", base)
    other = prepare_clone(repo, repo / ".pagent" / "clones" / "b", "pagent/t/b", base)
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".bashrc").write_text("# the user's\n")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    before = {
        "refs": refs(repo),
        "main": digest(repo, skip=(".git", ".pagent")),
        "git": digest(repo / ".git", skip=("objects", "refs", "logs")),
        "other": digest(other.path),
        "home": digest(home, skip=(".claude",)),
    }
    policy = SandboxPolicy(writable=(mine.path, home / ".claude"), read_only=(repo, home), network=False)
    argv = (sys.executable, "-c", HOSTILE, str(repo), str(other.path), str(home), str(victim.pid))
    env = {**os.environ, **GIT_IDENTITY, "HOME": str(home)}
    try:
        done = run(wrap(argv, policy, mine.path), env)
        assert done.returncode == 0, done.stderr
        report = json.loads(done.stdout)
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
    results = report["results"]
    assert {name for name, outcome in results.items() if outcome == "ok"} == ALLOWED, results
    assert len(results) == 16
    for name in ("edit main worktree", "write home", "write /etc", "write other workspace"):
        assert "Read-only file system" in results[name]  # visible, not merely hidden
    clone.check_clone(repo, mine.path, mine.branch)
    after = fetch_back(repo, mine, "refs/pagent/r1/a/1")
    assert after == report["mine"] == git(repo, "rev-parse", "pagent/t/a").strip()
    assert git(repo, "show", "pagent/t/a:mine.txt") == "evil\n"
    after_refs = refs(repo)
    assert after_refs.pop("refs/heads/pagent/t/a") == report["mine"]
    assert after_refs.pop("refs/pagent/r1/a/1") == report["mine"]
    before_refs = dict(before["refs"])
    before_refs.pop("refs/heads/pagent/t/a")
    assert after_refs == before_refs
    assert digest(repo, skip=(".git", ".pagent")) == before["main"]
    assert digest(other.path) == before["other"]
    assert digest(home, skip=(".claude",)) == before["home"]
    assert (home / ".claude" / "state.json").exists()
    assert not Path("/etc/pagent-evil").exists()
    # Beyond the fetched objects and the two refs (and their logs), the main .git is unchanged.
    assert digest(repo / ".git", skip=("objects", "refs", "logs")) == before["git"]
    git(repo, "fsck", "--no-dangling")


def test_a_clone_tampered_with_from_inside_is_refused_outside(repo: Path) -> None:
    """Symlinking the clone's refs to the main repository's (harmless inside, where they are
    read-only) would make pagent's own git calls write there: fetch-back refuses the clone."""
    (repo / ".git" / "info" / "exclude").write_text(".pagent/\n")
    mine = prepare_clone(
        repo, repo / ".pagent" / "clones" / "a", "pagent/t/a", git(repo, "rev-parse", "HEAD").strip()
    )
    before = refs(repo)
    heads = mine.path / ".git" / "refs" / "heads"
    code = f"mv {heads} {heads}.old && ln -s {repo / '.git' / 'refs' / 'heads'} {heads}"
    policy = SandboxPolicy(writable=(mine.path,), read_only=(repo,))
    assert run(wrap(("sh", "-c", code), policy, mine.path)).returncode == 0
    with pytest.raises(CloneError, match="tampered"):
        clone.check_clone(repo, mine.path, mine.branch)
    assert refs(repo) == before


def test_without_network_a_loopback_server_is_out_of_reach() -> None:
    """An unsandboxed process and a sandbox with network reach 127.0.0.1; without network not."""
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    server.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                conn, _ = server.accept()
                with conn:
                    conn.sendall(b"pong")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    code = (
        "import socket, sys\n"
        "conn = socket.create_connection(('127.0.0.1', int(sys.argv[1])), 5)\n"
        "print(conn.recv(4).decode())"
    )
    argv = (sys.executable, "-c", code, str(port))
    try:
        assert run(argv).stdout.strip() == "pong"
        online = SandboxPolicy(writable=(), network=True)
        assert run(wrap(argv, online, Path("/"))).stdout.strip() == "pong"
        offline = SandboxPolicy(writable=(), network=False)
        done = run(wrap(argv, offline, Path("/")))
        assert done.returncode != 0
        assert "ConnectionRefusedError" in done.stderr or "unreachable" in done.stderr
    finally:
        stop.set()
        thread.join(5)
        server.close()


AGENT = r"""
import os, signal, subprocess, sys, time
ws, mode = sys.argv[1], sys.argv[2]
def graceful(*_):
    time.sleep(0.2)  # a shutdown that takes a moment: it must get its grace
    with open(os.path.join(ws, "graceful"), "w") as file:
        file.write("yes")
    os._exit(7)
signal.signal(signal.SIGTERM, graceful if mode == "graceful" else signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", "pagent-child"])
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv(sys.executable, [sys.executable, "-c", "import time; time.sleep(120)", "pagent-daemon"])
    os._exit(0)
os.wait()
with open(os.path.join(ws, "ready"), "w") as file:
    file.write("ready")
while True:
    time.sleep(1)
"""


@contextlib.contextmanager
def sandboxed_agent(tmp_path: Path, mode: str, cookie: str) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """The AGENT under the sandbox, started as the launcher starts agents (own session), ready."""
    ws = tmp_path / "ws"
    argv = wrap((sys.executable, "-c", AGENT, str(ws), mode), SandboxPolicy(writable=(ws,)), ws)
    env = {**os.environ, proctree.COOKIE_VAR: cookie}
    proc = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        poll((ws / "ready").exists)
        yield proc, ws
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def by_marker(procs: list[psutil.Process], marker: str) -> list[psutil.Process]:
    found = []
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            if marker in proc.cmdline():
                found.append(proc)
    return found


def test_the_supervisor_sees_the_whole_tree_and_its_sigterm_gets_its_grace(tmp_path: Path) -> None:
    """Host pids, the group, the cookie and the tree machinery find every process, a setsid
    daemon included; SIGTERM reaches the agent, which finishes its shutdown; nothing is left."""
    cookie = "pagent-test-sandbox-grace"
    mark = proctree.pid_mark()
    with sandboxed_agent(tmp_path, "graceful", cookie) as (proc, ws):
        tree = proctree.tree(psutil.Process(proc.pid), proc.pid, cookie, mark)
        (daemon,) = by_marker(tree, "pagent-daemon")
        (child,) = by_marker(tree, "pagent-child")
        assert os.getsid(daemon.pid) != proc.pid  # a real daemon: a session of its own
        assert os.getpgid(child.pid) == proc.pid  # no --new-session: the group signal reaches it
        assert daemon.environ()[proctree.COOKIE_VAR] == cookie
        assert {p.pid for p in proctree.with_cookie(cookie)} == {p.pid for p in tree}
        killed = anyio.run(proctree.stop_processes, tree, proc.pid, 10.0)
        assert killed == 0
        assert proc.wait(10) == 7  # the agent's own exit code, after its handler ran
        assert (ws / "graceful").read_text() == "yes"
        assert not [p for p in tree if proctree.alive(p)]
        assert proctree.with_cookie(cookie) == []


def test_an_agent_ignoring_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    """SIGKILL at the end of the grace takes the sandbox down with everything in it."""
    cookie = "pagent-test-sandbox-kill"
    with sandboxed_agent(tmp_path, "stubborn", cookie) as (proc, _):
        tree = proctree.tree(psutil.Process(proc.pid), proc.pid, cookie)
        started = time.monotonic()
        killed = anyio.run(proctree.stop_processes, tree, proc.pid, 0.5)
        assert killed >= 1
        assert time.monotonic() - started < 5
        poll(lambda: proctree.with_cookie(cookie) == [])
        assert proc.wait(10) == -signal.SIGKILL


def test_a_normal_exit_takes_leftover_daemons_with_it(tmp_path: Path) -> None:
    """When the command exits, its pid namespace ends: a setsid daemon it left does not survive."""
    cookie = "pagent-test-sandbox-exit"
    ws = tmp_path / "ws"
    code = (
        "import subprocess, sys\n"
        "daemon = 'import os, time; os.setsid(); time.sleep(120)'\n"
        "subprocess.Popen([sys.executable, '-c', daemon, 'pagent-daemon'], start_new_session=True)\n"
        "sys.exit(3)"
    )
    argv = wrap((sys.executable, "-c", code), SandboxPolicy(writable=(ws,)), ws)
    proc = subprocess.Popen(argv, env={**os.environ, proctree.COOKIE_VAR: cookie}, start_new_session=True)
    assert proc.wait(30) == 3
    poll(lambda: proctree.with_cookie(cookie) == [])


LAUNCHER = r"""
import os, subprocess, sys, time
proc = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, start_new_session=True)
print(proc.pid, flush=True)
time.sleep(120)
"""


def test_killing_the_sandboxs_parent_kills_everything_inside(tmp_path: Path) -> None:
    """--die-with-parent: SIGKILL of the process that started bwrap (a dying supervisor) ends
    the sandbox, the setsid daemon inside included, without any parent-death signal of ours."""
    cookie = "pagent-test-sandbox-parent"
    ws = tmp_path / "ws"
    argv = wrap((sys.executable, "-c", AGENT, str(ws), "stubborn"), SandboxPolicy(writable=(ws,)), ws)
    env = {**os.environ, proctree.COOKIE_VAR: cookie}
    launcher = subprocess.Popen(
        [sys.executable, "-c", LAUNCHER, *argv], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert launcher.stdout is not None
        bwrap_pid = int(launcher.stdout.readline())
        poll((ws / "ready").exists)
        inside = proctree.with_cookie(cookie)
        assert by_marker(inside, "pagent-daemon")
        assert any(p.pid == bwrap_pid for p in inside)
        launcher.kill()
        launcher.wait(10)
        poll(lambda: proctree.with_cookie(cookie) == [])
    finally:
        launcher.kill()
        launcher.wait(10)
        if launcher.stdout is not None:
            launcher.stdout.close()
        for proc in proctree.with_cookie(cookie):
            proc.kill()


WRITE = """
import sys
for path in sys.argv[1:]:
    try:
        open(path, "a").close()
        print("ok", path)
    except OSError as exc:
        print("denied", path, exc.strerror)
"""


def writes(policy: SandboxPolicy, cwd: Path, *paths: Path) -> dict[str, str]:
    """Which of ``paths`` a sandboxed process could create or append to: path -> ok / denied."""
    done = run(wrap((sys.executable, "-c", WRITE, *map(str, paths)), policy, cwd))
    assert done.returncode == 0, done.stderr
    return {line.split()[1]: line.split()[0] for line in done.stdout.splitlines()}


def test_the_most_specific_path_decides(tmp_path: Path) -> None:
    """A repository below a writable home stays read-only; a workspace below it is writable."""
    home = tmp_path / "home"
    repo = home / "repo"
    ws = repo / ".pagent" / "clones" / "t"
    ws.mkdir(parents=True)
    policy = SandboxPolicy(writable=(home, ws), read_only=(repo,))
    got = writes(policy, ws, home / "a", repo / "b", ws / "c", repo / ".pagent" / "d")
    assert got == {
        str(home / "a"): "ok",
        str(repo / "b"): "denied",
        str(ws / "c"): "ok",
        str(repo / ".pagent" / "d"): "denied",
    }


def test_read_only_wins_on_the_same_path_and_symlinks_are_resolved(tmp_path: Path) -> None:
    """Naming a path writable and read-only (or hidden) gives the stricter; a writable path given
    through a symlink is bound at its real place, so writes land there."""
    both, real = tmp_path / "both", tmp_path / "real"
    both.mkdir()
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    masked = tmp_path / "masked"
    masked.mkdir()
    policy = SandboxPolicy(writable=(both, link, masked), read_only=(both,), hidden=(masked,))
    got = writes(policy, Path("/"), both / "x", real / "y", masked / "z")
    assert got[str(both / "x")] == "denied"
    assert got[str(real / "y")] == "ok"
    assert (real / "y").exists()
    assert not (masked / "z").exists()  # hidden beats writable: the write stayed in a tmpfs


def test_missing_state_paths_dirs_are_created_files_skipped(tmp_path: Path) -> None:
    """A missing writable directory is created (0700) and writable; a missing optional file is
    neither created nor can the sandbox create it."""
    home = tmp_path / "home"
    home.mkdir()
    state, config = home / ".gemini", home / ".claude.json"
    policy = SandboxPolicy(writable=(state,), writable_if_present=(config,), read_only=(home,))
    got = writes(policy, Path("/"), state / "settings.json", config)
    assert got == {str(state / "settings.json"): "ok", str(config): "denied"}
    assert state.stat().st_mode & 0o777 == 0o700
    config.write_text("{}")
    assert writes(policy, Path("/"), config) == {str(config): "ok"}


def test_private_tmp_and_hidden_directories(tmp_path: Path) -> None:
    """The host's /tmp is not visible; a hidden directory is empty, and a Unix socket in it is
    out of reach, while a read-only mount alone does not stop a connection."""
    sockets = tmp_path / "run"
    sockets.mkdir()
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(sockets / "daemon.sock"))
    listener.listen(4)
    code = (
        "import os, socket, sys; print(sorted(os.listdir('/tmp')));"
        "s = socket.socket(socket.AF_UNIX)\ntry:\n    s.connect(sys.argv[1]); print('connected')\n"
        "except OSError as exc:\n    print('refused', exc.strerror)"
    )
    argv = (sys.executable, "-c", code, str(sockets / "daemon.sock"))
    try:
        visible = run(wrap(argv, SandboxPolicy(writable=(), read_only=(tmp_path,)), Path("/")))
        assert visible.stdout.splitlines()[1] == "connected"
        hidden = run(
            wrap(argv, SandboxPolicy(writable=(), read_only=(tmp_path,), hidden=(sockets,)), Path("/"))
        )
        assert hidden.stdout.splitlines()[1].startswith("refused")
        private = run(wrap(argv, SandboxPolicy(writable=()), Path("/")))
        listed = set(ast.literal_eval(private.stdout.splitlines()[0]))
        # Only what the program needs to run is mounted back (pagent's own interpreter and
        # installation when they live in /tmp, as in a CI checkout there); never the rest.
        needed = {Path(sys.prefix), Path(supervisor.__file__).resolve().parents[1]}
        allowed = {p.relative_to("/tmp").parts[0] for p in needed if p.is_relative_to("/tmp")}
        assert listed <= allowed
        assert tmp_path.relative_to("/").parts[1] not in listed or not tmp_path.is_relative_to("/tmp")
    finally:
        listener.close()


def test_unusable_requests_are_refused_before_running(tmp_path: Path) -> None:
    """A hidden working directory, a relative path, an empty command: one clear error each."""
    with pytest.raises(SandboxError, match="hidden"):
        wrap(("true",), SandboxPolicy(writable=()), tmp_path)
    with pytest.raises(SandboxError, match="absolute"):
        wrap(("true",), SandboxPolicy(writable=(Path("rel"),)), Path("/"))
    with pytest.raises(SandboxError, match="empty"):
        wrap((), SandboxPolicy(writable=()), Path("/"))


def test_a_machine_without_bwrap_is_told_why(tmp_path: Path) -> None:
    """With no bwrap on the search path the problem names it (and ``wrap`` refuses)."""
    empty = tmp_path / "bin"
    empty.mkdir()
    assert "not installed" in (sandbox_problem(str(empty)) or "")
    with pytest.raises(SandboxError, match="not installed"):
        wrap(("true",), SandboxPolicy(writable=()), Path("/"), path=str(empty))


@pytest.mark.claude
def test_claude_code_works_confined_to_its_workspace(repo: Path, tmp_path: Path) -> None:
    """The real CLI under the sandbox writes its workspace and records its session in ~/.claude,
    while a Bash command that writes into the main repository fails with a read-only error."""
    cli = ensure_claude_cli()
    if cli.path is None:
        pytest.skip(f"Claude Code CLI unavailable: {cli.reason}")
    ws, home = tmp_path / "ws", tmp_path / "home"
    ws.mkdir()
    (home / ".claude").mkdir(parents=True)
    evil = repo / "evil.txt"
    script = [
        write_file(str(ws / "hello.txt"), "hi\n"),
        run_bash(f"echo evil > {evil}"),
        TextReply("done"),
    ]
    policy = SandboxPolicy(
        writable=(ws, home / ".claude"), writable_if_present=(home / ".claude.json",), read_only=(repo, home)
    )
    args = ("--permission-mode", "acceptEdits", "--allowedTools", "Bash")
    with FakeAnthropic(script) as api:
        argv = wrap((str(cli.path), *STREAM_JSON_ARGS, *args), policy, ws)
        done = subprocess.run(
            argv, input="go", capture_output=True, text=True, env=claude_env(api.url, home), timeout=120
        )
        results = [
            block
            for message in api.requests[-1]["messages"]
            if isinstance(message.get("content"), list)
            for block in message["content"]
            if block.get("type") == "tool_result"
        ]
    assert done.returncode == 0, done.stderr
    final = [json.loads(line) for line in done.stdout.splitlines() if '"type":"result"' in line]
    assert final
    assert final[-1]["is_error"] is False
    assert (ws / "hello.txt").read_text() == "hi\n"
    assert not evil.exists()
    assert "Read-only file system" in json.dumps(results[-1])
    assert list((home / ".claude" / "projects").iterdir())  # the session was recorded
