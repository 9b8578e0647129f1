"""A hostile agent: does to its worktree, its repository and its supervisor what the prompt says.

One action per prompt line, run in order (other lines are ignored); paths are relative to the
agent's working directory. Actions:

  write PATH TEXT        write TEXT and a newline to PATH (creating directories)
  write-hex-name HEX     create an empty file whose name is the bytes HEX (e.g. not UTF-8)
  commit MESSAGE         git add -A, then commit (empty commits allowed)
  amend MESSAGE          git commit --amend: rewrites the commit HEAD points at
  detach                 git checkout --detach (HEAD leaves the task branch)
  checkout-new NAME      git checkout -b NAME (work continues on another branch)
  checkout NAME          git checkout NAME
  delete-own-branch      detach, then delete the branch the worktree was on
  move-ref REF           git update-ref REF HEAD (e.g. refs/heads/main: moves someone's branch)
  delete-ref REF         git update-ref -d REF (a branch another worktree may have checked out)
  head-to FILE           write the commit HEAD points at to FILE (an absolute path)
  git-config KEY VALUE   git config KEY VALUE (in the repository's shared config)
  index-lock             leave the worktree's index.lock behind, as a crashed git would
  symlink LINK TARGET    make LINK a symlink to TARGET (replacing what was there)
  to-file PATH           replace the directory PATH (may be absolute) by a plain file
  rm-worktree            delete the whole worktree ($PAGENT_WORKTREE), .git file included
  print-hex HEX          write the bytes HEX to stdout (escape sequences, markup...)
  daemon PIDFILE         leave a daemon: double fork, own session, empty environment, SIGTERM
                         ignored; PIDFILE gets its pid (written atomically)
  kill-parent SIGNAL     send SIGNAL (a number) to the supervisor that started this agent
  kill-guardian PIDFILE  SIGKILL the supervisor's guardian (its child running guardian.py);
                         PIDFILE gets "AGENT_PID GUARDIAN_PID" (written atomically)
  stop-self              SIGSTOP itself: a stopped process uses no CPU and writes nothing
  sleep SECONDS          sleep
  wait-for PATH          wait (30 s at most) until PATH exists, printing a line every 0.1 s
  exit CODE              exit with CODE now
The agent prints "rogue done" and exits 0 after the last action.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path


def git(*args: str, cwd: str | None = None) -> str:
    return subprocess.run(["git", *args], check=True, capture_output=True, text=True, cwd=cwd).stdout


def kill_guardian(pidfile: Path) -> None:
    parent = os.getppid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat[stat.rindex(")") + 2 :].split()[1]) == parent and b"guardian.py" in cmdline:
            os.kill(int(entry.name), signal.SIGKILL)
            tmp = pidfile.with_name(pidfile.name + ".tmp")
            tmp.write_text(f"{os.getpid()} {entry.name}")
            tmp.replace(pidfile)
            return
    raise SystemExit("no guardian found")


DAEMON = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
tmp = sys.argv[1] + ".tmp"
with open(tmp, "w") as f:
    f.write(str(os.getpid()))
os.replace(tmp, sys.argv[1])
os.write(int(sys.argv[2]), b"ready")
os.close(int(sys.argv[2]))
while True:
    time.sleep(3600)
"""


def daemon(pidfile: Path) -> None:
    """Start a daemon that no environment variable, session or parent ties to this agent.

    It is exec'd with an empty environment (unsetting variables in a running process would
    not hide them: /proc/PID/environ shows the environment the process was started with).
    """
    read_end, write_end = os.pipe()
    os.set_inheritable(write_end, True)
    if os.fork() == 0:
        os.close(read_end)
        os.setsid()
        if os.fork() == 0:
            os.chdir("/")
            # Keeps the agent's stdout and stderr open, as careless daemons do.
            os.execve(sys.executable, [sys.executable, "-c", DAEMON, str(pidfile), str(write_end)], {})
        os._exit(0)
    os.close(write_end)
    os.read(read_end, 16)
    os.close(read_end)


def act(action: str, rest: str) -> None:
    if action == "write":
        path, _, text = rest.partition(" ")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")
    elif action == "write-hex-name":
        with open(bytes.fromhex(rest), "wb"):
            pass
    elif action == "commit":
        git("add", "-A")
        git("commit", "-q", "--allow-empty", "--no-verify", "-m", rest or "rogue work")
    elif action == "amend":
        git("commit", "-q", "--amend", "--allow-empty", "--no-verify", "-m", rest or "rewritten")
    elif action == "detach":
        git("checkout", "-q", "--detach")
    elif action == "checkout-new":
        git("checkout", "-q", "-b", rest)
    elif action == "checkout":
        git("checkout", "-q", rest)
    elif action == "delete-own-branch":
        branch = git("symbolic-ref", "--short", "HEAD").strip()
        git("checkout", "-q", "--detach")
        git("branch", "-q", "-D", branch)
    elif action == "move-ref":
        git("update-ref", rest, "HEAD")
    elif action == "delete-ref":
        git("update-ref", "-d", rest)
    elif action == "head-to":
        Path(rest).write_text(git("rev-parse", "HEAD"))
    elif action == "git-config":
        key, _, value = rest.partition(" ")
        git("config", key, value)
    elif action == "index-lock":
        Path(git("rev-parse", "--git-path", "index.lock").strip()).write_text("")
    elif action == "symlink":
        link, _, target = rest.partition(" ")
        where = Path(link)
        if where.is_dir() and not where.is_symlink():
            shutil.rmtree(where)
        else:
            where.unlink(missing_ok=True)
        where.parent.mkdir(parents=True, exist_ok=True)
        where.symlink_to(target)
    elif action == "to-file":
        shutil.rmtree(rest, ignore_errors=True)
        Path(rest).write_text("not a directory any more\n")
    elif action == "rm-worktree":
        shutil.rmtree(os.environ["PAGENT_WORKTREE"])
    elif action == "print-hex":
        sys.stdout.buffer.write(bytes.fromhex(rest))
        sys.stdout.flush()
    elif action == "daemon":
        daemon(Path(rest))
    elif action == "kill-parent":
        os.kill(os.getppid(), int(rest))
    elif action == "kill-guardian":
        kill_guardian(Path(rest))
    elif action == "stop-self":
        os.kill(os.getpid(), signal.SIGSTOP)
    elif action == "wait-for":
        deadline = time.monotonic() + 30
        while not Path(rest).exists() and time.monotonic() < deadline:
            print("waiting", flush=True)
            time.sleep(0.1)
    elif action == "sleep":
        time.sleep(float(rest))
    elif action == "exit":
        sys.exit(int(rest))


for line in sys.stdin.read().splitlines():
    name, _, argument = line.strip().partition(" ")
    act(name, argument)
print("rogue done", flush=True)
