"""summary.json's text (``indented_json``) is exactly what ``json.dumps(view, indent=2)`` writes,
for every JSON value a view can hold: escapes of control characters, DEL, non-ASCII text and
emoji, big integers, floats of every size, empty and nested containers; and for what only json
writes (NaN, infinities, lone surrogates), through json's own encoder."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest

from supervisor.state.views import indented_json

ODD_TEXT = [
    "",
    "plain",
    'quote " and \\ backslash',
    "\x00\x01\x1f\x7f",
    "tab\tnew\nline\r",
    "é ü ß",
    "😀",
    "\u2028\u2029",
    "/",
]
NUMBERS = [0, -1, 10**30, -(10**20), 0.1, -0.0, 3.0, 1e16, 1.5e-7, 123456789.123456789, 2.5e-300]


def _value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value built from the odd texts and numbers above."""
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice([None, True, False, *NUMBERS, *ODD_TEXT])
    if roll < 0.65:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(ODD_TEXT) + str(n): _value(rng, depth + 1) for n in range(rng.randint(0, 4))}


def test_random_values_give_json_s_own_text() -> None:
    rng = random.Random(19)
    for _ in range(3000):
        value = _value(rng)
        assert indented_json(value) == json.dumps(value, indent=2)


def test_a_run_view_gives_json_s_own_text() -> None:
    task = {"id": "t1", "state": "succeeded", "attempts": 1, "cost_usd": None, "history": [{"attempt": 1}]}
    view = {"run_id": "r", "counts": {"succeeded": 1}, "overlaps": [], "notes": {}, "tasks": [task] * 3}
    assert indented_json(view) == json.dumps(view, indent=2)


@pytest.mark.parametrize(
    "value", [float("nan"), [float("inf")], {"cost": float("-inf")}, "lone \ud800 surrogate", {"k\udcff": 1}]
)
def test_what_only_json_writes_still_comes_out_as_json_writes_it(value: Any) -> None:
    assert indented_json(value) == json.dumps(value, indent=2)
