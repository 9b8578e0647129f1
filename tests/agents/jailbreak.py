"""A hostile agent for the sandbox tests: tries to escape its workspace, reports what worked.

Run in its workspace (a clone or a worktree) with ``PAGENT_WORKTREE`` set. Arguments: the main
repository's path, the name of another task whose workspace is its sibling, a branch of the main
repository to delete, and a file to write its report to (JSON: action -> "ok" or "denied: ...").
``--unconfined`` skips the write to /etc and the remount (for runs without the sandbox, where
they would succeed on the host).

Every attempt is made, in order; then its own work is committed in its workspace, which must
always succeed. It exits 0 when its own work was committed, whatever else happened.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

main, other_task, other_branch, report = sys.argv[1:5]
confined = "--unconfined" not in sys.argv
workspace = Path(os.environ["PAGENT_WORKTREE"])
other = workspace.parent / other_task
home = Path(os.environ["HOME"])
results: dict[str, str] = {}


def attempt(name: str, action: object) -> None:
    try:
        action()  # type: ignore[operator]
        results[name] = "ok"
    except Exception as exc:
        results[name] = f"denied: {exc}"


def write(path: Path | str) -> None:
    with open(path, "w") as file:
        file.write("evil\n")


def git(*args: str, cwd: Path | str = ".") -> str:
    done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"exit {done.returncode}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


attempt("write main worktree", lambda: write(Path(main) / "README.md"))
attempt("create in main worktree", lambda: write(Path(main) / "evil.txt"))
attempt("write a ref file in main", lambda: write(Path(main) / ".git" / "refs" / "heads" / "evil"))
attempt("write home", lambda: write(home / "evil"))
if confined:
    attempt("write /etc", lambda: write("/etc/pagent-evil"))
attempt("write another task's workspace", lambda: write(other / "evil.txt"))
(workspace / "mine.txt").write_text("my work\n")
git("add", "mine.txt")
git("commit", "--quiet", "-m", "my work")
mine = git("rev-parse", "HEAD")
attempt("update-ref main", lambda: git("update-ref", "refs/heads/main", mine, cwd=main))
attempt("branch -D another branch", lambda: git("branch", "-D", other_branch, cwd=main))
attempt("push into main", lambda: git("push", "--force", main, "HEAD:refs/heads/main"))
attempt("push a new branch", lambda: git("push", main, "HEAD:refs/heads/evil"))
attempt("gc --prune=now in main", lambda: git("gc", "--quiet", "--prune=now", cwd=main))
if confined:
    remount = ["mount", "-o", "remount,rw", "/"]
    attempt("remount / read-write", lambda: subprocess.run(remount, check=True, capture_output=True))
Path(report).write_text(json.dumps({"results": results, "mine": mine}))
print(json.dumps(results))
