"""Checking a notification URL the way apprise will read it, for the plan loader.

The plan sits below this package and cannot ask apprise itself; the CLI hands ``url_problem``
to ``supervisor.plan.load.load_plan``. Only parses: no connection is made and nothing is sent.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from supervisor.handoff.loader import load_apprise
from supervisor.handoff.masking import mask_text, mask_url


def url_problem(url: str) -> str | None:
    """Why apprise would not send to ``url`` (masked, one line), or ``None`` if it parses."""
    try:
        apprise = load_apprise()
    except ImportError:
        return "sending to URLs needs the apprise package (pip install apprise)"
    with _apprise_log() as said:
        plugin = apprise.Apprise.instantiate(url, asset=apprise.AppriseAsset(storage_mode="memory"))
    if plugin is not None:
        return None
    reason = mask_text(said[-1], [url]) if said else "not a URL apprise knows"
    return f"apprise does not accept {mask_url(url)!r}: {' '.join(reason.split())}"


@contextmanager
def _apprise_log() -> Iterator[list[str]]:
    """Collect what apprise logs (warnings and errors) from this thread while the block runs;
    apprise says why it rejects a URL only there."""
    thread = threading.get_ident()
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.thread == thread and record.levelno >= logging.WARNING:
                lines.append(record.getMessage())

    logger = logging.getLogger("apprise")
    handler = Collect()
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
