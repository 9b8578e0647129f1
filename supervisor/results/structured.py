"""An agent's structured result (``result_schema``) as a verdict on its attempt.

With ``result_schema`` the agent kind asks its CLI for a final JSON object following the schema
(Claude: ``--json-schema``; Codex: ``--output-schema FILE``) and reports it as
``structured_output``. ``judge_result`` applies it
to an attempt the agent kind judged successful (a failure the kind recognised -- an API error,
denied tool calls -- stands as it is):

=========================  ==================================================================
the result                 the attempt
=========================  ==================================================================
none at all                fails ``result-invalid: the agent returned no structured result``
does not validate          fails ``result-invalid: <the first problem> (at <path>)``
``status: "done"``         succeeded (the checks after it apply as usual)
``status: "nothing_to_do"``  succeeded; ``require_changes`` does not apply to it
``status: "needs_input"``  fails ``needs-input``, its ``question`` shown first to a person
``status: "failed"``       fails ``agent-failed: <its reason>``
another ``status``         fails ``result-invalid: unknown status ...``
no ``status`` field        succeeded
=========================  ==================================================================

The result is validated here too (with ``jsonschema``, against the schema the plan loader
checked), because what a CLI does with a schema is its own affair: an older Claude Code ignores
an invalid one, and a model may answer in text after all.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from supervisor.reasons import Reason

STATUSES = ("done", "nothing_to_do", "needs_input", "failed")
_SHOWN = 2000  # characters of a question or a reason kept for a person


@dataclass(frozen=True)
class ResultVerdict:
    """The attempt after its structured result; ``changes_optional``: nothing was to be done,
    so ``require_changes`` does not apply."""

    succeeded: bool
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)
    changes_optional: bool = False


def judge_result(schema: str, succeeded: bool, reason: str, output: Any) -> ResultVerdict:  # noqa: PLR0911 - one return per row of the table above
    """Apply the structured result ``output`` (``None``: there was none) of an attempt whose
    agent kind said ``succeeded``/``reason``, for the JSON Schema text ``schema`` (see the
    module docstring)."""
    if not succeeded:
        return ResultVerdict(succeeded, reason)
    if output is None:
        return ResultVerdict(False, Reason.RESULT_INVALID.detail("the agent returned no structured result"))
    if (problem := validation_problem(json.loads(schema), output)) is not None:
        return ResultVerdict(False, Reason.RESULT_INVALID.detail(problem))
    status = output.get("status") if isinstance(output, dict) else None
    if status is None or status == "done":
        return ResultVerdict(True, reason)
    if status == "nothing_to_do":
        return ResultVerdict(True, reason, changes_optional=True)
    if status == "needs_input":
        question = _text(output.get("question")) or "(the agent asked for input without a question)"
        return ResultVerdict(False, Reason.NEEDS_INPUT.value, {"question": question})
    if status == "failed":
        why = _text(output.get("reason")) or "no reason given"
        return ResultVerdict(False, Reason.AGENT_FAILED.detail(" ".join(why.split())[:300]))
    known = ", ".join(STATUSES)
    return ResultVerdict(
        False, Reason.RESULT_INVALID.detail(f"unknown status {str(status)[:100]!r} ({known})")
    )


def validation_problem(schema: dict[str, Any], output: Any) -> str | None:
    """The most relevant way ``output`` breaks ``schema`` ("'status' is a required property"),
    or ``None`` when it validates."""
    from jsonschema import exceptions, validators  # noqa: PLC0415 - only runs with a schema pay for it

    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    error = exceptions.best_match(cls(schema).iter_errors(output))
    if error is None:
        return None
    where = "/".join(str(part) for part in error.absolute_path)
    return " ".join(error.message.split())[:300] + (f" (at {where})" if where else "")


def _text(value: Any) -> str:
    """A question or a reason as text (a non-string as its JSON), cut for a person."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.strip()[:_SHOWN]
