"""Reading the files a plan names (the plan itself, prompt and context files) without surprises.

A name in a plan can point anywhere: at a FIFO (opening it blocks until someone writes), at
``/dev/zero`` (never ends), at a directory, or at a huge file. ``read_bounded`` looks before it
reads: it ``stat``s the path and refuses anything that is not a regular file, without opening
it; then it opens with ``O_NONBLOCK`` (in case the path was swapped for a FIFO in between),
checks the open file again and reads at most ``limit`` bytes. It never blocks and never holds
more than ``limit`` bytes.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PROMPT_LIMIT = 1 << 20  # 1 MiB per prompt or context file: far above any real prompt
PLAN_LIMIT = 64 << 20  # a 10,000-task plan is about 1 MB


class FileProblem(ValueError):
    """Why a file cannot be read as text (one line, without the path: the caller names it)."""


def _kind(mode: int) -> str:
    """A file type in words, for a message."""
    kinds = (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    )
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def _size(limit: int) -> str:
    return f"{limit >> 20} MiB" if limit >= 1 << 20 else f"{limit} bytes"


def read_bounded(path: Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    ``FileNotFoundError`` if it does not exist; ``FileProblem`` if it is not a regular file or
    is larger than ``limit``; another ``OSError`` if it cannot be read.
    """
    try:
        info = path.stat()
    except ValueError:  # an embedded NUL byte: no file can have that name
        raise FileProblem("the path contains a NUL byte") from None
    if not stat.S_ISREG(info.st_mode):
        raise FileProblem(f"is {_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise FileProblem(f"is {info.st_size} bytes: larger than the {_size(limit)} limit")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        opened = os.fstat(fd)
        if not stat.S_ISREG(opened.st_mode):
            raise FileProblem(f"is {_kind(opened.st_mode)}, not a regular file")
        chunks = []
        total = 0
        while total <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    finally:
        os.close(fd)
    if total > limit:  # it grew after the stat
        raise FileProblem(f"is larger than the {_size(limit)} limit")
    return b"".join(chunks)


def read_text(path: Path, limit: int) -> str:
    """``read_bounded`` decoded as UTF-8; ``FileProblem`` if it is not UTF-8."""
    data = read_bounded(path, limit)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise FileProblem(f"is not UTF-8 text: {exc.reason} at byte {exc.start}") from None
