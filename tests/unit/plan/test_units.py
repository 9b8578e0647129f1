"""Human units: durations and sizes parsed from a plan, durations formatted for people."""

from __future__ import annotations

import pytest

from supervisor.plan.units import format_duration, parse_duration, parse_size


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90s", 90.0),
        ("10m", 600.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2h0m5s", 7205.0),
        ("1m30s", 90.0),
        ("500ms", 0.5),
        ("1s250ms", 1.25),
        ("1.5h", 5400.0),
        ("0.5m", 30.0),
        ("0s", 0.0),
        ("45", 45.0),
        ("2.5", 2.5),
        (" 10m ", 600.0),
        (0, 0.0),
        (45, 45.0),
        (2.5, 2.5),
    ],
)
def test_parse_duration_accepts_units_and_plain_seconds(value: str | float, seconds: float) -> None:
    """h, m, s and ms combine in that order; a bare number (or numeric string) is seconds."""
    assert parse_duration(value) == seconds
    assert isinstance(parse_duration(value), float)


def test_parse_duration_minutes_are_not_milliseconds() -> None:
    """ "m" means minutes and "ms" milliseconds, even side by side."""
    assert parse_duration("1m") == 60.0
    assert parse_duration("1ms") == 0.001
    assert parse_duration("1m1ms") == 60.001


@pytest.mark.parametrize(
    "value",
    [
        "",
        "   ",
        "soon",
        "10 minutes",
        "1d",
        "1m30",
        "30s1m",
        "1h1h",
        "h",
        "ms",
        "1.s",
        ".5s",
        "1H",
        "1e3",
        "-5s",
        "+5",
    ],
)
def test_parse_duration_rejects_other_strings(value: str) -> None:
    """Strings outside the h/m/s/ms grammar raise ValueError showing the value and the expected forms."""
    with pytest.raises(ValueError, match="expected a duration such as '90s'") as caught:
        parse_duration(value)
    assert repr(value) in str(caught.value)


@pytest.mark.parametrize("value", [-1, -0.5, "-1"])
def test_parse_duration_rejects_negative_numbers(value: float | str) -> None:
    """A negative number of seconds is refused."""
    with pytest.raises(ValueError, match="expected a duration"):
        parse_duration(value)


@pytest.mark.parametrize("value", [True, False])
def test_parse_duration_rejects_booleans(value: bool) -> None:
    """true/false are not durations, although bool is an int in Python."""
    with pytest.raises(ValueError, match=f"got {value!r}"):
        parse_duration(value)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_parse_duration_rejects_non_finite_numbers(value: float) -> None:
    """nan and infinities (valid TOML floats) are refused: a nan limit would never be reached."""
    with pytest.raises(ValueError, match="expected a finite duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    ("value", "size"),
    [
        (0, 0),
        (1000, 1000),
        ("1000", 1000),
        ("512", 512),
        ("1K", 1024),
        ("1k", 1024),
        ("512M", 512 * 1024**2),
        ("2G", 2 * 1024**3),
        ("1T", 1024**4),
        ("1.5G", int(1.5 * 1024**3)),
        ("1.5GiB", int(1.5 * 1024**3)),
        ("64MB", 64 * 1024**2),
        ("100 M", 100 * 1024**2),
        (" 8G ", 8 * 1024**3),
        ("10B", 10),
    ],
)
def test_parse_size_accepts_units_and_bytes(value: str | int, size: int) -> None:
    """K, M, G, T (any case, optional "i"/"B") are powers of 1024; a bare number is bytes."""
    assert parse_size(value) == size


@pytest.mark.parametrize("value", ["", "lots", "G", "1X", "1.5.2G", "-1G", "1GG", "1P", "1 000"])
def test_parse_size_rejects_other_strings(value: str) -> None:
    """Strings that are not a number with an optional K/M/G/T unit raise ValueError naming the value."""
    with pytest.raises(ValueError, match="expected a size such as '512M'") as caught:
        parse_size(value)
    assert repr(value) in str(caught.value)


def test_parse_size_rejects_negative_integers() -> None:
    """A negative number of bytes is refused."""
    with pytest.raises(ValueError, match="expected a size >= 0, got -1"):
        parse_size(-1)


@pytest.mark.parametrize("value", [True, False])
def test_parse_size_rejects_booleans(value: bool) -> None:
    """true/false are not sizes."""
    with pytest.raises(ValueError, match="expected a size"):
        parse_size(value)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0.0s"),
        (0.4, "0.4s"),
        (9.94, "9.9s"),
        (10, "10s"),
        (12.4, "12s"),
        (59.4, "59s"),
        (59.6, "1m00s"),
        (60, "1m00s"),
        (185, "3m05s"),
        (3599, "59m59s"),
        (3600, "1h00m"),
        (3725, "1h02m"),
        (26 * 3600 + 5 * 60, "26h05m"),
    ],
)
def test_format_duration_is_compact(seconds: float, text: str) -> None:
    """Under 10s one decimal; under a minute whole seconds; then m+ss; from an hour h+mm."""
    assert format_duration(seconds) == text


@pytest.mark.parametrize("text", ["90s", "10m", "1h30m", "3m05s"])
def test_format_duration_output_parses_back(text: str) -> None:
    """What format_duration prints for whole seconds is a duration parse_duration accepts."""
    seconds = parse_duration(text)
    assert parse_duration(format_duration(seconds)) == seconds
