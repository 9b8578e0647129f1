"""When a usage limit resets: from the CLI's exact ``resets_at``, or from the text it printed.

Claude Code reports a plan's usage limit as "You've hit your 5-hour limit · resets 7:35pm (UTC)"
(or "weekly limit · resets Nov 25, 12:25am (UTC)") and, in a ``rate_limit_event``, as epoch
seconds. The runner waits for the reset when it is within ``max_wait``.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from typing import Any


def reset_in(metrics: dict[str, Any], now: float) -> float | None:
    """Seconds from ``now`` until a usage limit resets, from an attempt's metrics, or ``None``.

    Prefers the CLI's exact ``resets_at`` (epoch seconds); falls back to the time of day in the
    text (``resets``). A reset already past gives 0.
    """
    at = metrics.get("resets_at")
    if isinstance(at, int | float) and not isinstance(at, bool):
        return max(0.0, float(at) - now)
    text = metrics.get("resets")
    if isinstance(text, str) and text.strip():
        return seconds_until_reset(text, now)
    return None


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_RESET_DATE = re.compile(
    r"\b(?P<mon>jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+(?P<day>\d{1,2})\b,?",
    re.IGNORECASE,
)
_RESET_TIME = re.compile(
    r"\b(?P<h>\d{1,2})(?::(?P<m>\d{2}))?\s*(?P<ampm>[ap]\.?m\.?)?(?![\w:])", re.IGNORECASE
)
_RESET_RELATIVE = re.compile(
    r"\bin\s+(?:(?P<h>\d+)\s*h(?:ours?|rs?)?)?\s*(?:(?P<m>\d+)\s*m(?:in(?:utes?)?)?)?\b", re.IGNORECASE
)
_RESET_ZONE = re.compile(r"\(([A-Za-z_]+(?:/[A-Za-z_+-]+)+|UTC|GMT)\)")


def seconds_until_reset(resets: str, now: float) -> float | None:  # noqa: PLR0911
    """Seconds from ``now`` until the moment a usage-limit message names, or ``None``.

    Understands "7:35pm", "3 pm", "15:00", optionally after a date ("Nov 25, 12:25am") and
    before a zone ("(UTC)", "(Europe/Paris)"; without one the machine's local time is meant),
    and "in 2h 30m". A time of day means its next occurrence after ``now``; a date without a
    year the nearest one that is not in the past. A bare number ("3") is too ambiguous: None.
    """
    relative = _RESET_RELATIVE.search(resets)
    if relative and (relative["h"] or relative["m"]):
        return 3600.0 * int(relative["h"] or 0) + 60.0 * int(relative["m"] or 0)
    zone: tzinfo | None = None
    if tz_match := _RESET_ZONE.search(resets):
        # Imported here: only a usage limit naming its zone needs the zone database's code.
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError  # noqa: PLC0415

        try:
            zone = ZoneInfo("UTC" if tz_match[1] == "GMT" else tz_match[1])
        except (ValueError, ZoneInfoNotFoundError):
            zone = None
    date = _RESET_DATE.search(resets)
    rest = resets[: date.start()] + " " + resets[date.end() :] if date else resets
    match = next((m for m in _RESET_TIME.finditer(rest) if m["m"] is not None or m["ampm"] is not None), None)
    if match is None:
        return None
    hour, minute = int(match["h"]), int(match["m"] or 0)
    if match["ampm"]:
        if not 1 <= hour <= 12:
            return None
        hour = hour % 12 + (12 if match["ampm"].lower().startswith("p") else 0)
    if hour > 23 or minute > 59:
        return None
    current = datetime.fromtimestamp(now, zone) if zone else datetime.fromtimestamp(now).astimezone()
    if date is None:
        target = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
        if target <= current:
            target += timedelta(days=1)
        return (target - current).total_seconds()
    month, day = _MONTHS.index(date["mon"][:3].lower()) + 1, int(date["day"])
    for year in (current.year, current.year + 1):
        try:
            target = current.replace(
                year=year, month=month, day=day, hour=hour, minute=minute, second=0, microsecond=0
            )
        except ValueError:  # Feb 30, or Feb 29 in a common year
            continue
        # A moment just past (clocks differ by a little) still counts as now, not next year.
        if target >= current - timedelta(hours=1):
            return max(0.0, (target - current).total_seconds())
    return None
