"""``result_schema``: the JSON Schema an agent's structured result must follow, read and checked.

A task's ``result_schema`` is a JSON file (relative to the plan) or an inline TOML table. It is
checked when the plan is loaded, with the ``jsonschema`` package, because agent CLIs treat a bad
schema in their own ways (older Claude Code versions ignore it silently): it must be a valid JSON
Schema (of its ``$schema`` draft, 2020-12 by default) for one JSON object (``"type": "object"``,
which is what a tool's input is to the Messages API). The model keeps it as canonical JSON text,
which is what the agent kinds hand to their CLIs.

``jsonschema`` is imported only when a plan has a schema: a plan without one pays nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

from supervisor.plan.files import PROMPT_LIMIT, FileProblem, read_text


def load_schema(value: str | dict[str, Any], plan_dir: Path) -> str:
    """The schema ``value`` names (a file relative to ``plan_dir``, or the table itself) as
    canonical JSON text; ``ValueError`` (one line) if it cannot be read or is no valid schema."""
    if isinstance(value, str):
        path = plan_dir / value
        try:
            text = read_text(path, PROMPT_LIMIT)
        except FileNotFoundError:
            raise ValueError(f"no such file: {path}") from None
        except FileProblem as exc:
            raise ValueError(f"cannot read {path}: it {exc}") from None
        except OSError as exc:
            raise ValueError(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            schema = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{path} is not JSON: {exc}") from None
    else:
        schema = value
    problem = schema_problem(schema)
    if problem is not None:
        raise ValueError(problem)
    return json.dumps(schema, sort_keys=True, separators=(",", ":"))


def schema_problem(schema: Any) -> str | None:
    """Why ``schema`` cannot describe an agent's result, or ``None``."""
    if not isinstance(schema, dict):
        return f"expected a JSON Schema object, got {type(schema).__name__}"
    if schema.get("type") != "object":
        return 'the schema must describe one JSON object: set "type": "object" at its top'
    from jsonschema import exceptions, validators  # noqa: PLC0415 - only plans with a schema pay for it

    if "$schema" in schema:
        # default=None: an unknown $schema comes back as None instead of the latest draft.
        cls = validators.validator_for(schema, default=cast(Any, None))
        if cls is None:
            named = str(schema["$schema"])[:200]
            return f"unknown $schema {named!r} (known: the JSON Schema drafts 3 to 2020-12)"
    else:
        cls = validators.Draft202012Validator
    try:
        cls.check_schema(schema)
    except exceptions.SchemaError as exc:
        where = "/".join(str(part) for part in exc.path)
        return f"not a valid JSON Schema: {exc.message}" + (f" (at {where})" if where else "")
    return None
