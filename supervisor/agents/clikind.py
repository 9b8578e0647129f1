"""What the ``codex``, ``gemini`` and ``opencode`` kinds share: homes, argument checks, preflight.

``home`` decides whose state a CLI uses: ``"user"`` (the environment's: the user's login and
config, which pagent never writes to; pagent's additions go on the command line or into a file
of the attempt's own directory) or ``"own"`` (a directory of pagent's; no login there, so the
API key comes from the agent's ``env``). Unset, it is ``"own"`` when the agent names a
``base_url`` (a login to the vendor's API does not apply to another server) and ``"user"``
otherwise (where the login lives).

Every CLI's own API retries are bounded so that pagent's retry policy, not the CLI, decides
what a failing API costs: ``CLI_RETRIES`` retries of a failed request during a task (where a
retry is cheap next to starting the task over), none in the preflight (whose own loop retries,
``PREFLIGHT_TRIES`` prompts at most).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from supervisor.agents.base import Notice, OutputParser, Setup
from supervisor.plan.model import AgentSpec, Home

if TYPE_CHECKING:
    from supervisor.seam import AttemptKey, Executor

CLI_RETRIES = 2  # retries of a failed API request a CLI may make by itself during a task
PREFLIGHT_RETRIES = 0  # ... and in the preflight's one-line prompt
# One-line prompts for a transient failure: each try of these CLIs costs a start-up (opencode's
# 5-10 s) and their bounded retries; a second try 5 s later tells a blip from a lasting failure,
# and the tasks retry by their own policy anyway (Claude's preflight: 4 tries over ~35 s).
PREFLIGHT_TRIES = 2


def home_of(agent: AgentSpec) -> Home:
    """The agent's ``home``, or the default: ``"own"`` with a ``base_url``, else ``"user"``."""
    if agent.home is not None:
        return agent.home
    return "own" if agent.base_url is not None else "user"


def option_value(args: Sequence[str], names: Sequence[str]) -> str | None:
    """The value the last of ``--name VALUE`` / ``--name=VALUE`` (any of ``names``) gives in
    ``args``, or ``None`` when none is there."""
    found = None
    for i, arg in enumerate(args):
        for name in names:
            if arg == name and i + 1 < len(args):
                found = args[i + 1]
            elif arg.startswith(f"{name}="):
                found = arg.partition("=")[2]
    return found


def refuse_format(args: Sequence[str], names: Sequence[str], wanted: str, kind: str) -> None:
    """``ValueError`` if ``args`` choose an output format other than ``wanted`` (the kind
    reads only that one)."""
    chosen = option_value(args, names)
    if chosen is not None and chosen != wanted:
        raise ValueError(
            f"{names[0]} {chosen}: kind {kind!r} reads {names[0]} {wanted} only; drop it from the arguments"
        )


async def preflight(
    agent: AgentSpec,
    executor: Executor,
    key: AttemptKey,
    *,
    argv: Sequence[str],
    setup: Setup,
    new_parser: Callable[[], OutputParser],
    max_wait: float,
    notice: Notice,
) -> str:
    """The kind's preflight: ``--version``, then the one-line prompt with ``argv`` and ``setup``
    (``supervisor.agents.preflight``)."""
    from supervisor.agents.preflight import run_preflight  # anyio: not needed to load a plan

    return await run_preflight(
        agent,
        executor,
        key,
        new_parser(),
        max_wait=max_wait,
        new_parser=new_parser,
        notice=notice,
        argv=argv,
        setup=setup,
        tries=PREFLIGHT_TRIES,
    )
