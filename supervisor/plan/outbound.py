"""The plan's ``[notify]`` and ``[publish]`` tables checked into ``NotifyConfig`` and ``PublishConfig``.

The tables' shape (types, unknown keys) is ``schema``'s; this module applies the rules msgspec
cannot: notification URLs must be ones apprise accepts, ``on`` names known events, durations
are positive, command templates use only known placeholders. Whether a URL is accepted is asked
of ``check_url``, which whoever loads the plan hands in (the plan sits below the package that
knows apprise); without it URLs are not checked. Nothing is sent, pushed or contacted here.
Problems raise ``ValueError`` with one line naming the key path (``notify.urls[1]: ...``).
"""

from __future__ import annotations

import string
import sys
from collections.abc import Callable
from pathlib import Path

from supervisor.plan.model import (
    CONFIGURABLE_EVENTS,
    DEFAULT_EVENTS,
    DRAFT_COMMAND,
    LIST_COMMAND,
    READY_COMMAND,
    NotifyConfig,
    NotifyEvent,
    PublishConfig,
)
from supervisor.plan.names import branch_problem
from supervisor.plan.schema import NotifyTable, PublishTable
from supervisor.plan.units import parse_duration

UrlCheck = Callable[[str], str | None]  # why a URL cannot be used (masked, one line), or None

PR_PLACEHOLDERS = frozenset({"branch", "base", "title", "body_file", "remote", "plan_dir", "python"})
LIST_PLACEHOLDERS = frozenset({"branch", "base", "remote", "plan_dir", "python"})


def notify_config(
    table: NotifyTable | None, plan_dir: Path, check_url: UrlCheck | None = None
) -> NotifyConfig:
    """The checked form of ``[notify]`` (``None``: no table, nothing is sent)."""
    if table is None:
        return NotifyConfig()
    if check_url is not None:
        for index, url in enumerate(table.urls):
            problem = check_url(url)
            if problem is not None:
                raise ValueError(f"notify.urls[{index}]: {problem}")
    # A listed `on` is the whole set (plus run-finished, which is always sent).
    events = set(DEFAULT_EVENTS) if table.on is None else {NotifyEvent.RUN_FINISHED}
    known = {event.value for event in CONFIGURABLE_EVENTS}
    for index, name in enumerate(table.on or []):
        if name not in known:
            listed = ", ".join(event.value for event in CONFIGURABLE_EVENTS)
            raise ValueError(f"notify.on[{index}]: unknown event {name!r} (known: {listed})")
        events.add(NotifyEvent(name))
    command = None
    if table.command is not None:
        command = tuple(
            arg.replace("{plan_dir}", str(plan_dir)).replace("{python}", sys.executable)
            for arg in table.command
        )
    return NotifyConfig(
        urls=tuple(table.urls),
        command=command,
        events=frozenset(events),
        timeout=_positive_duration(table.timeout, "notify.timeout"),
        retries=table.retries,
    )


def publish_config(table: PublishTable | None, *, integrate: bool = False) -> PublishConfig:
    """The checked form of ``[publish]`` (``None``: no table, nothing is pushed); ``integrate``
    says whether the plan has an ``[integrate]`` branch to open a pull request for."""
    if table is None:
        return PublishConfig()
    if table.pull_request_for == "integration" and not integrate:
        raise ValueError("publish.pull_request_for: 'integration' needs an [integrate] branch")
    default = READY_COMMAND if table.pull_request == "ready" else DRAFT_COMMAND
    command = tuple(table.command) if table.command is not None else default
    listing = tuple(table.list_command) if table.list_command is not None else LIST_COMMAND
    if table.base is not None and (problem := branch_problem(table.base)):
        raise ValueError(f"publish.base: {table.base!r} {problem}")
    _check_template(command, PR_PLACEHOLDERS, "publish.command")
    _check_template(listing, LIST_PLACEHOLDERS, "publish.list_command")
    return PublishConfig(
        remote=table.remote,
        pull_request=table.pull_request,
        pull_request_for=table.pull_request_for,
        base=table.base,
        auto=table.auto,
        command=command,
        list_command=listing,
        timeout=_positive_duration(table.timeout, "publish.timeout"),
    )


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
    """Every ``{name}`` in ``argv`` must be one of ``known``, plain (no ``!r``, no ``:spec``);
    ``{{`` and ``}}`` are literal."""
    for index, arg in enumerate(argv):
        try:
            fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(arg) if f is not None]
        except ValueError as exc:
            raise ValueError(f"{key}[{index}]: {exc} in {arg!r} (write a literal brace doubled)") from None
        for name, spec, conversion in fields:
            if name not in known:
                allowed = ", ".join(f"{{{k}}}" for k in sorted(known))
                raise ValueError(f"{key}[{index}]: unknown placeholder {{{name}}} (known: {allowed})")
            if spec or conversion:  # would change the value, or fail when the command is made
                raise ValueError(f"{key}[{index}]: placeholder {{{name}}} has a conversion or format spec")
