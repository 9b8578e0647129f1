"""Parsing of the human units a plan uses: durations ("1h30m") and sizes ("512M")."""

from __future__ import annotations

import functools
import math
import re

_DURATION = re.compile(
    r"^(?:(?P<h>\d+(?:\.\d+)?)h)?(?:(?P<m>\d+(?:\.\d+)?)m(?!s))?"
    r"(?:(?P<s>\d+(?:\.\d+)?)s)?(?:(?P<ms>\d+(?:\.\d+)?)ms)?$"
)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_SIZE = re.compile(r"^(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>[KMGT]?)i?B?$", re.IGNORECASE)
_SIZE_FACTORS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


@functools.lru_cache(maxsize=1024, typed=True)  # typed: True must not hit the entry of 1
def parse_duration(value: str | int | float) -> float:
    """Return ``value`` in seconds: a number of seconds, or a string like "90s", "10m", "1h30m", "500ms".

    Raises ``ValueError`` with the expected forms when ``value`` is none of them or negative.
    """
    if isinstance(value, bool):
        raise ValueError(f"expected a duration such as '90s', '10m', '1h30m' or seconds, got {value!r}")
    if isinstance(value, int | float) or _NUMBER.match(value.strip()):
        seconds = float(value)
    else:
        match = _DURATION.match(value.strip())
        if not value.strip() or match is None or not any(match.groupdict().values()):
            raise ValueError(f"expected a duration such as '90s', '10m', '1h30m' or seconds, got {value!r}")
        parts = {k: float(v) for k, v in match.groupdict().items() if v is not None}
        seconds = (
            parts.get("h", 0.0) * 3600
            + parts.get("m", 0.0) * 60
            + parts.get("s", 0.0)
            + parts.get("ms", 0.0) / 1000
        )
    if not math.isfinite(seconds):
        # TOML has nan and inf; nan would compare false against every limit and disable it.
        raise ValueError(f"expected a finite duration, got {value!r}")
    if seconds < 0:
        raise ValueError(f"expected a duration >= 0, got {value!r}")
    return seconds


def parse_size(value: str | int) -> int:
    """Return ``value`` in bytes: a number of bytes, or a string like "512M", "2G", "1.5GiB"."""
    if isinstance(value, bool):
        raise ValueError(f"expected a size such as '512M' or '2G', got {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"expected a size >= 0, got {value!r}")
        return value
    match = _SIZE.match(value.strip())
    if match is None:
        raise ValueError(f"expected a size such as '512M' or '2G', got {value!r}")
    return int(float(match["n"]) * _SIZE_FACTORS[match["unit"].upper()])


def format_duration(seconds: float) -> str:
    """Render ``seconds`` compactly for people: "0.4s", "12s", "3m05s", "1h02m"."""
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"
