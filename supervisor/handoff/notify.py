"""Sending one notification to every target of ``[notify]``, bounded in time, never raising.

Targets are the apprise URLs (one ``apprise.Apprise`` per URL, so each is bounded and reported
on its own) and the ``command`` (an argv that reads the JSON payload on stdin; no shell). All
targets are tried at once, each in its own daemon thread, and the caller waits at most
``timeout`` seconds in all: a target that accepts the connection and never answers is reported
as such when the bound passes, and its thread is left behind (a daemon thread does not keep the
process alive; apprise's socket timeouts, set to the bound, end it soon after).

Within the bound a failing target is tried again (``retries`` times, after 0.5 s, then 1.5 s).
``json://`` and ``jsons://`` targets (generic webhooks, for machines) also get the full payload
as an attachment ``pagent-notification.json`` (apprise sends it base64-encoded in the JSON
body's ``attachments``); every other target gets the short title and body only.

Secrets in URLs never reach a result: targets are named by ``mask_url`` and every message is
scrubbed with ``mask_text``.
"""

from __future__ import annotations

import functools
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from supervisor.handoff.loader import load_apprise
from supervisor.handoff.masking import mask_text, mask_url
from supervisor.handoff.payload import Notification
from supervisor.plan.model import NotifyConfig
from supervisor.workspace.bounded import run_bounded

__all__ = ["TargetResult", "mask_url", "notify", "send"]

ATTACHMENT_NAME = "pagent-notification.json"
_WEBHOOK_SCHEMES = frozenset({"json", "jsons"})
_PAUSES = (0.5, 1.5)  # before the second and third try; later tries reuse the last
_MIN_TRY = 0.2  # a try with less time left than this cannot succeed; do not start it


@dataclass(frozen=True)
class TargetResult:
    """How sending to one target went: ``error`` is one masked line, ``None`` when ``ok``."""

    target: str  # the masked URL, or "command <argv[0]>"
    ok: bool
    error: str | None
    tries: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for the run's record (``notifications`` in status JSON)."""
        return {
            "target": self.target,
            "ok": self.ok,
            "error": self.error,
            "tries": self.tries,
            "seconds": round(self.seconds, 3),
        }

    def line(self) -> str:
        """One line for the event log: 'notify json://host/***: ok' or '...: error (3 tries)'."""
        if self.ok:
            return f"notify {self.target}: ok"
        return f"notify {self.target}: {self.error} ({self.tries} {'try' if self.tries == 1 else 'tries'})"


async def notify(config: NotifyConfig, note: Notification) -> list[TargetResult]:
    """Send ``note`` to every target if ``config`` wants its event; return one result per target.

    Returns within ``config.timeout`` (plus scheduling noise) whatever the targets do, without
    blocking the event loop; never raises (cancellation aside).
    """
    if not config.wants(note.event):
        return []
    # The worker thread only joins the daemon senders, up to the bound: it always ends in time.
    return await anyio.to_thread.run_sync(functools.partial(send, config, note), abandon_on_cancel=True)


def send(config: NotifyConfig, note: Notification) -> list[TargetResult]:
    """Blocking ``notify``: the same bound and results, for callers without an event loop."""
    if not config.wants(note.event):
        return []
    start = time.monotonic()
    deadline = start + config.timeout
    targets: list[tuple[str, functools.partial[str | None]]] = [
        (mask_url(url), functools.partial(_apprise_once, url, note)) for url in config.urls
    ]
    if config.command:
        argv = config.command
        targets.append((f"command {Path(argv[0]).name}", functools.partial(_command_once, argv, note)))
    slots: list[TargetResult | None] = [None] * len(targets)
    threads = []
    for index, (name, once) in enumerate(targets):

        def work(index: int = index, name: str = name, once: functools.partial[str | None] = once) -> None:
            slots[index] = _with_retries(name, once, deadline, config.retries, start)

        thread = threading.Thread(target=work, name=f"pagent-notify-{index}", daemon=True)
        thread.start()
        threads.append(thread)
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    # A slot still empty at the bound: its target hangs (or its retries did not fit in time).
    late = f"no answer within {config.timeout:g} s"
    return [
        slot if slot is not None else TargetResult(name, False, late, 1, config.timeout)
        for (name, _), slot in zip(targets, slots, strict=True)
    ]


def _with_retries(
    name: str, once: functools.partial[str | None], deadline: float, retries: int, start: float
) -> TargetResult:
    """Call ``once(remaining)`` until it returns no error, ``retries`` more times at most, and
    only while time is left before ``deadline``."""
    tries, error = 0, "no time left to try"
    while True:
        remaining = deadline - time.monotonic()
        if remaining < _MIN_TRY:
            break
        tries += 1
        try:
            error = once(remaining) or ""
        except Exception as exc:  # a notification must never take the run down with it
            error = f"{type(exc).__name__}: {exc}"
        if not error:
            return TargetResult(name, True, None, tries, time.monotonic() - start)
        if tries > retries:
            break
        pause = _PAUSES[min(tries, len(_PAUSES)) - 1]
        if deadline - time.monotonic() - pause < _MIN_TRY:
            break
        time.sleep(pause)  # this is the target's own daemon thread; the caller is not waiting on it
    return TargetResult(name, False, error, tries, time.monotonic() - start)


def _apprise_once(url: str, note: Notification, remaining: float) -> str | None:
    """One try at ``url`` through its own ``apprise.Apprise``, bounded by ``remaining``; the
    masked error line, or ``None`` on success."""
    apprise = load_apprise()
    asset = apprise.AppriseAsset(storage_mode="memory")  # write nothing to disk
    plugin = apprise.Apprise.instantiate(url, asset=asset)
    if plugin is None:
        return "apprise does not accept this URL"
    # Both socket timeouts within the bound, so a hung server also frees the thread in time.
    plugin.socket_connect_timeout = min(plugin.socket_connect_timeout, remaining)
    plugin.socket_read_timeout = remaining
    sender = apprise.Apprise(asset=asset)
    sender.add(plugin)
    attach = None
    if url.partition("://")[0].lower() in _WEBHOOK_SCHEMES:
        from apprise.attachment.memory import AttachMemory  # noqa: PLC0415

        attach = AttachMemory(  # type: ignore[no-untyped-call]  # apprise leaves it unannotated
            content=note.to_json(), name=ATTACHMENT_NAME, mimetype="application/json"
        )
    result = sender.notify(
        body=note.body,
        title=note.title,
        notify_type=apprise.NotifyType(note.level.value),
        attach=attach,
        timeout=remaining,
    )
    if result:
        return None
    said = [entry.message for entry in result.logs() if entry.level in {"WARNING", "ERROR", "CRITICAL"}]
    return mask_text(" ".join((said[-1] if said else "apprise reported a failure").split()), [url])


def _command_once(argv: tuple[str, ...], note: Notification, remaining: float) -> str | None:
    """One run of the ``command`` target with the payload on stdin; error line or ``None``."""
    env = {**os.environ, "PAGENT_EVENT": note.event.value}
    done = run_bounded(argv, timeout=remaining, env=env, stdin=note.to_json().encode() + b"\n")
    return None if done.ok else done.problem(Path(argv[0]).name)
