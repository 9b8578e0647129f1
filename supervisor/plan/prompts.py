"""A task's prompt: shared context files, the template and its placeholders.

The prompt an attempt receives is the plan's ``context_file``, then the wave's, then the task's
own prompt, separated by ``SEPARATOR``. Context files are included verbatim. The task's prompt
(inline or from ``prompt_file``) is a template in the manner of Python's ``str.format``: the
placeholders below are filled per attempt, and a literal brace is written doubled (``{{``).
An unknown placeholder, or one with a conversion or format spec (``{task_id!r}``,
``{attempt:>5}``), is a plan error, found when the plan is loaded.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path

PLACEHOLDERS = {
    "task_id": "the task's id",
    "wave": "the wave's name",
    "branch": "the task's branch (empty with isolation = 'none')",
    "base": "the ref worktrees start from (the plan's base, or HEAD)",
    "worktree": "the task's worktree directory",
    "attempt": "the attempt's number, from 1",
    "previous_failure": "on a retry: the previous attempt's reason and the last lines of its log",
}
SEPARATOR = "\n\n-----\n\n"
FAILURE_LINES = 20
_FAILURE_CHARS = 3000


def template_problem(text: str) -> str | None:
    """Why ``text`` is not a valid prompt template, or ``None``."""
    try:
        fields = [
            (field, spec, conversion)
            for _, field, spec, conversion in string.Formatter().parse(text)
            if field is not None
        ]
    except ValueError as exc:
        return f"{exc} (write a literal brace doubled: '{{{{' or '}}}}')"
    for field, spec, conversion in fields:
        if field not in PLACEHOLDERS:
            known = ", ".join("{" + name + "}" for name in PLACEHOLDERS)
            shown = "{" + field + "}"
            return f"unknown placeholder {shown} (known: {known}; a literal brace is written doubled)"
        if spec or conversion:
            # A format spec or conversion ({task_id!r}, {attempt:>9}) would change the value or
            # fail while rendering at night: placeholders are plain.
            shown = "{" + field + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "")
            shown = shown[:60] + "}"
            return f"placeholder {shown} has a conversion or format spec; write it plain, {{{field}}}"
    return None


def render(template: str, values: Mapping[str, object]) -> str:
    """Fill ``template``'s placeholders (already checked by ``template_problem``)."""
    return template.format(**{name: values.get(name, "") for name in PLACEHOLDERS})


def compose(context: str, prompt: str) -> str:
    """The prompt an attempt receives: the context (if any), a separator, the task's prompt."""
    return f"{context}{SEPARATOR}{prompt}" if context else prompt


def previous_failure(reason: str | None, log_path: str | None) -> str:
    """What a retry learns about the attempt before it: its reason and its log's last lines."""
    if reason is None:
        return ""
    tail = ""
    if log_path is not None:
        try:
            with Path(log_path).open("rb") as log:
                log.seek(0, 2)
                size = log.tell()
                log.seek(max(0, size - 64 * 1024))
                data = log.read()
        except OSError:
            data = b""
        lines = data.decode("utf-8", "replace").splitlines()[-FAILURE_LINES:]
        tail = "\n".join(lines)[-_FAILURE_CHARS:]
    text = f"The previous attempt failed: {reason}."
    return f"{text}\nThe last lines of its output:\n{tail}" if tail else text
