"""Each attempt's own OpenTelemetry context, when the supervisor runs under one.

Claude Code (and other agents) export traces and metrics through the standard OpenTelemetry
variables. When pagent-run itself was started with a W3C ``TRACEPARENT`` (a CI job's or a
scheduler's trace) or with ``OTEL_*`` settings, every attempt would otherwise report under the
very same parent and resource, and a night of tasks could not be told apart. So the attempt's
environment overlay gets:

- ``TRACEPARENT``: the same trace id and flags, with a new random parent (span) id, so each
  attempt is its own child of the supervisor's trace (only when a valid ``TRACEPARENT`` is
  there: a malformed one is left as it is);
- ``OTEL_RESOURCE_ATTRIBUTES``: the existing attributes plus ``pagent.run``, ``pagent.task``
  and ``pagent.attempt`` (only when some ``TRACEPARENT`` or ``OTEL_*`` variable is set).

What counts is the supervisor's environment with the agent's ``env`` over it (the agent's
settings win, as they do when it runs). Pure: the environment and the random source are given.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable, Mapping
from urllib.parse import quote

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
_ZERO_SPAN = "0" * 16


def _is_otel(name: str) -> bool:
    return name == "TRACEPARENT" or name.startswith("OTEL_")


def otel_variables(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` that ``attempt_context`` looks at (``TRACEPARENT`` and
    ``OTEL_*``): what a run takes from the supervisor's environment, once, when it begins."""
    return {name: value for name, value in environ.items() if _is_otel(name)}


def attempt_context(
    environ: Mapping[str, str],
    agent_env: Mapping[str, str],
    *,
    run_id: str,
    task_id: str,
    attempt: int,
    new_span: Callable[[], str] = lambda: secrets.token_hex(8),
) -> dict[str, str]:
    """The variables to add to an attempt's overlay (see the module docstring); empty when
    neither environment has any OpenTelemetry setting."""
    if not any(_is_otel(name) for name in agent_env) and not any(_is_otel(name) for name in environ):
        return {}  # asked at every attempt: neither environment is copied for it
    merged = {**environ, **agent_env}
    added: dict[str, str] = {}
    parent = _TRACEPARENT.match(merged.get("TRACEPARENT", "").strip().lower())
    if parent is not None and parent[1] != "ff" and parent[2] != "0" * 32:
        span = new_span()
        while span == _ZERO_SPAN:  # an all-zero parent id is invalid (W3C Trace Context)
            span = new_span()
        added["TRACEPARENT"] = f"{parent[1]}-{parent[2]}-{span}-{parent[4]}"
    ours = {"pagent.run": run_id, "pagent.task": task_id, "pagent.attempt": str(attempt)}
    kept = [
        pair
        for pair in merged.get("OTEL_RESOURCE_ATTRIBUTES", "").split(",")
        if pair.strip() and pair.split("=", 1)[0].strip() not in ours
    ]
    # Values are percent-encoded as the OpenTelemetry specification asks (',' and '=' inside).
    kept += [f"{key}={quote(value, safe='')}" for key, value in ours.items()]
    added["OTEL_RESOURCE_ATTRIBUTES"] = ",".join(kept)
    return added
