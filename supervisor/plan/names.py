"""Names pagent accepts: task and agent ids (safe as path and branch components), and git's
rules for branch names (``git check-ref-format --branch``), checked without running git."""

from __future__ import annotations

import re

TASK_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9._-]*$")


def branch_problem(name: str) -> str | None:  # noqa: PLR0911 - one return per rule
    """Why ``name`` is not a valid git branch name (git check-ref-format's rules), or ``None``."""
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
    return None
