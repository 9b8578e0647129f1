"""The plan's ``[notify]`` and ``[publish]`` tables: their shape, their checks, their frozen form.

``NotifyTable`` and ``PublishTable`` are msgspec structs in the house style of ``schema.py``
(unknown keys are errors); ``convert`` checks a parsed plan's two tables and returns
``NotifyConfig`` and ``PublishConfig``, or raises ``ValueError`` with one line naming the key path
(``notify.urls[1]: apprise does not accept 'slack://***': ...``). Nothing is sent, pushed or
started here: notification URLs are checked by asking apprise to parse them, and whether a remote
exists is ``publish.remote_problem``'s question (it needs the repository).
"""

from __future__ import annotations

import logging
import string
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from supervisor.handoff.loader import load_apprise
from supervisor.handoff.masking import mask_text, mask_url
from supervisor.handoff.payload import CONFIGURABLE, DEFAULT_EVENTS, Event
from supervisor.schema import Duration, NonEmptyStr, _describe, _Strict
from supervisor.units import parse_duration

PullRequestMode = Literal["draft", "ready", "none"]
PullRequestFor = Literal["tasks", "integration"]
Argv = Annotated[tuple[NonEmptyStr, ...], msgspec.Meta(min_length=1)]

# The GitHub CLI (gh >= 2.4: every flag used here is in its 2.4.0 manual and in today's).
# --head skips gh's interactive push/fork step; --body-file keeps the body out of argv limits.
DRAFT_COMMAND = (
    "gh", "pr", "create", "--draft", "--head", "{branch}", "--base", "{base}",
    "--title", "{title}", "--body-file", "{body_file}",
)  # fmt: skip
READY_COMMAND = tuple(arg for arg in DRAFT_COMMAND if arg != "--draft")
# --state all: a pull request someone closed is an answer too; never open a second one.
LIST_COMMAND = ("gh", "pr", "list", "--head", "{branch}", "--state", "all", "--json", "url")
PR_PLACEHOLDERS = frozenset({"branch", "base", "title", "body_file", "remote", "plan_dir", "python"})
LIST_PLACEHOLDERS = frozenset({"branch", "base", "remote", "plan_dir", "python"})


class NotifyTable(_Strict, frozen=True):
    """``[notify]``: where notifications go and which events send one."""

    urls: tuple[NonEmptyStr, ...] = ()
    command: Argv | None = None
    on: tuple[str, ...] | None = None
    timeout: Duration = 10
    retries: Annotated[int, msgspec.Meta(ge=0, le=5)] = 2


class PublishTable(_Strict, frozen=True):
    """``[publish]``: push succeeded branches to a remote, optionally open pull requests."""

    remote: NonEmptyStr = "origin"
    pull_request: PullRequestMode = "none"
    pull_request_for: PullRequestFor = "tasks"
    command: Argv | None = None
    list_command: tuple[NonEmptyStr, ...] | None = None  # [] = do not ask; rely on the run's record
    timeout: Duration = "2m"


class HandoffTables(_Strict, frozen=True):
    """The two tables as they sit in a plan (the lead adds these fields to ``PlanTable``)."""

    notify: NotifyTable | None = None
    publish: PublishTable | None = None


@dataclass(frozen=True)
class NotifyConfig:
    """Checked ``[notify]``: apprise URLs, a command (argv), the events, the per-target bound."""

    urls: tuple[str, ...] = ()
    command: tuple[str, ...] | None = None
    events: frozenset[Event] = DEFAULT_EVENTS
    timeout: float = 10.0
    retries: int = 2

    @property
    def enabled(self) -> bool:
        """Whether there is anywhere to send a notification."""
        return bool(self.urls or self.command)

    def wants(self, event: Event) -> bool:
        """Whether ``event`` sends a notification (a test message always does)."""
        return self.enabled and (event is Event.TEST or event in self.events)


@dataclass(frozen=True)
class PublishConfig:
    """Checked ``[publish]``; ``remote`` is ``None`` when the plan publishes nothing."""

    remote: str | None = None
    pull_request: PullRequestMode = "none"
    pull_request_for: PullRequestFor = "tasks"
    command: tuple[str, ...] = DRAFT_COMMAND
    list_command: tuple[str, ...] = LIST_COMMAND  # empty: do not ask, trust the record
    timeout: float = 120.0

    @property
    def enabled(self) -> bool:
        """Whether branches are pushed at all."""
        return self.remote is not None


def convert(raw: Mapping[str, Any], plan_dir: Path | None = None) -> tuple[NotifyConfig, PublishConfig]:
    """Check the ``notify`` and ``publish`` tables of a parsed plan (other keys are ignored).

    ``{plan_dir}`` and ``{python}`` in ``notify.command`` expand as in agent commands. Raises
    ``ValueError`` with one line naming the key path on the first problem.
    """
    tables = {key: raw[key] for key in ("notify", "publish") if key in raw}
    try:
        checked = msgspec.convert(tables, type=HandoffTables)
    except msgspec.ValidationError as exc:
        raise ValueError(_describe(exc, tables)) from None
    return notify_config(checked.notify, plan_dir), publish_config(checked.publish)


def notify_config(table: NotifyTable | None, plan_dir: Path | None = None) -> NotifyConfig:
    """The checked form of ``[notify]`` (``None``: no table, nothing is sent)."""
    if table is None:
        return NotifyConfig()
    for index, url in enumerate(table.urls):
        problem = apprise_problem(url)
        if problem is not None:
            raise ValueError(f"notify.urls[{index}]: {problem}")
    # A listed `on` is the whole set (plus run-finished, which is always sent).
    events = set(DEFAULT_EVENTS) if table.on is None else {Event.RUN_FINISHED}
    for index, name in enumerate(table.on or []):
        if name not in {event.value for event in CONFIGURABLE}:
            known = ", ".join(event.value for event in CONFIGURABLE)
            raise ValueError(f"notify.on[{index}]: unknown event {name!r} (known: {known})")
        events.add(Event(name))
    command = None
    if table.command is not None:
        where = str(plan_dir) if plan_dir is not None else "."
        command = tuple(_expand(arg, where) for arg in table.command)
    return NotifyConfig(
        urls=table.urls,
        command=command,
        events=frozenset(events),
        timeout=_positive_duration(table.timeout, "notify.timeout"),
        retries=table.retries,
    )


def publish_config(table: PublishTable | None) -> PublishConfig:
    """The checked form of ``[publish]`` (``None``: no table, nothing is pushed)."""
    if table is None:
        return PublishConfig()
    default = READY_COMMAND if table.pull_request == "ready" else DRAFT_COMMAND
    command = table.command if table.command is not None else default
    listing = table.list_command if table.list_command is not None else LIST_COMMAND
    _check_template(command, PR_PLACEHOLDERS, "publish.command")
    _check_template(listing, LIST_PLACEHOLDERS, "publish.list_command")
    return PublishConfig(
        remote=table.remote,
        pull_request=table.pull_request,
        pull_request_for=table.pull_request_for,
        command=command,
        list_command=listing,
        timeout=_positive_duration(table.timeout, "publish.timeout"),
    )


def apprise_problem(url: str) -> str | None:
    """Why apprise would not send to ``url`` (masked, one line), or ``None`` if it parses.

    Only parses: no connection is made and nothing is sent.
    """
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
    apprise reports why it rejects a URL only there."""
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


def _expand(arg: str, plan_dir: str) -> str:
    """``{plan_dir}`` and ``{python}`` in a command argument, as in agent commands."""
    return arg.replace("{plan_dir}", plan_dir).replace("{python}", sys.executable)


def _positive_duration(value: str | int | float, key: str) -> float:
    """``value`` in seconds, which must be more than zero; ``ValueError`` naming ``key``."""
    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
    if seconds <= 0:
        raise ValueError(f"{key}: expected a duration > 0, got {value!r}")
    return seconds


def _check_template(argv: tuple[str, ...], known: frozenset[str], key: str) -> None:
    """Every ``{name}`` in ``argv`` must be one of ``known`` (``{{`` and ``}}`` are literal)."""
    for index, arg in enumerate(argv):
        try:
            names = [field for _, field, _, _ in string.Formatter().parse(arg) if field is not None]
        except ValueError as exc:
            raise ValueError(f"{key}[{index}]: {exc} in {arg!r} (write a literal brace doubled)") from None
        for name in names:
            if name not in known:
                allowed = ", ".join(f"{{{k}}}" for k in sorted(known))
                raise ValueError(f"{key}[{index}]: unknown placeholder {{{name}}} (known: {allowed})")
