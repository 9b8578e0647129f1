"""Names pagent accepts: task and agent ids (safe as path and branch components), and git's
rules for branch names (``git check-ref-format --branch``), checked without running git, plus
the limits git's files impose on them: a ref is a file under ``.git/refs/heads/`` (and its
reflog under ``.git/logs/``), so every component of a branch must fit a file name (255 bytes)
once git adds ``.lock`` and pagent adds ``-<run id>`` to a branch that already exists.

``printable`` makes any text that reaches a terminal or cron mail (an agent's output, its
question, a reason) harmless: escape sequences are removed whole, other control characters too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

TASK_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")
# A task id names files ("<id>.<attempt>.log", "<id>.<attempt>.txt", "<id>.md"), its worktree
# directory and git's admin directory for it; 200 leaves room for every suffix in 255 bytes.
MAX_ID = 200
# 255 (NAME_MAX) - len(".lock") - len("-20261124-020000.123-ab12") = 225; rounded down.
MAX_COMPONENT = 200
# The whole ref must fit a path (PATH_MAX 4096) below the repository's .git/logs/refs/heads/.
MAX_BRANCH = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# ESC (or its one-byte C1 form) and what follows it: CSI "ESC [ ... final", OSC/DCS/APC/PM/SOS
# strings up to BEL or ST, and two-character escapes ("ESC c", "ESC 7").
_SEQUENCE = re.compile(
    r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]?"
    r"|(?:\x1b[\]PX^_]|[\x90\x98\x9d-\x9f])[^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"
    r"|\x1b[ -/]*[0-~]?"
)
_BLANKS = re.compile(r"[\t\n\r\v\f]")


def printable(text: str) -> str:
    """``text`` without escape sequences and control characters, on one line (tabs and line
    breaks become spaces): safe to show on a terminal, never able to drive it."""
    if not _CONTROL.search(text):
        return text
    return _CONTROL.sub("", _BLANKS.sub(" ", _SEQUENCE.sub("", text)))


def has_control(text: str) -> bool:
    """Whether ``text`` holds a control character (C0, DEL or C1) a terminal could act on."""
    return _CONTROL.search(text) is not None


def branch_problem(name: str) -> str | None:  # noqa: PLR0911 - one return per rule
    """Why ``name`` is not a valid git branch name (git check-ref-format's rules, and the file
    name limits above), or ``None``."""
    if name.startswith("-"):
        return "must not start with '-'"
    if name == "@" or "@{" in name:
        return "must not be '@' or contain '@{'"
    if name == "HEAD":
        return "must not be 'HEAD'"
    if ".." in name or "//" in name:
        return "must not contain '..' or '//'"
    if name.startswith("/") or name.endswith("/") or name.endswith("."):
        return "must not start or end with '/' or end with '.'"
    if any(ord(c) < 32 or ord(c) == 127 or c in " ~^:?*[\\" for c in name):
        return "must not contain spaces, control characters or any of ~^:?*[\\"
    for part in name.split("/"):
        if part.startswith(".") or part.endswith(".lock"):
            return "has a component starting with '.' or ending with '.lock'"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_BRANCH:
        return f"is too long: at most {MAX_BRANCH} bytes"
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_COMPONENT for part in name.split("/")):
        return f"has a component longer than {MAX_COMPONENT} bytes (git stores each as a file name)"
    return None


def id_problem(task_id: str) -> str | None:
    """Why ``task_id`` cannot name a task (its files, worktree and default branch), or ``None``."""
    if not TASK_ID.match(task_id) or task_id.endswith(".lock") or ".." in task_id:
        return "is not a safe id (letters, digits, '.', '_', '-'; not starting with '.' or '-')"
    if len(task_id) > MAX_ID:
        return f"is too long: at most {MAX_ID} characters (it names the task's files)"
    return None


def short(text: str, limit: int = 60) -> str:
    """``repr(text)``, cut to about ``limit`` characters: for messages that quote a long value."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def clashes(branches: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], tuple[str, str]] | None:
    """The first pair of ``(branch, owner)`` entries git cannot hold side by side: one branch a
    directory prefix of another (``feat`` and ``feat/b``: ``refs/heads/feat`` cannot be a file
    and a directory at once), or ``None``. Equal names are not clashes here (see the loader).

    The later entry comes second; linear in the number of branches times their depth.
    """
    seen: dict[str, tuple[str, str]] = {}
    prefixes: dict[str, tuple[str, str]] = {}  # every proper "a/b" prefix of a branch seen
    for branch, owner in branches:
        parts = branch.split("/")
        for depth in range(1, len(parts)):
            above = "/".join(parts[:depth])
            if above in seen:
                return seen[above], (branch, owner)
        if branch in prefixes:
            return prefixes[branch], (branch, owner)
        seen.setdefault(branch, (branch, owner))
        for depth in range(1, len(parts)):
            prefixes.setdefault("/".join(parts[:depth]), (branch, owner))
    return None
