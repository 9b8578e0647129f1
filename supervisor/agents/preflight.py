"""Before a night of tasks: is the agent CLI there, and does it answer one prompt?

For every agent with ``preflight`` on (Claude agents by default) that a run is about to use, the
kind's ``preflight`` runs ``<command> --version`` and sends a one-line prompt, both through the
executor the tasks use, in a scratch directory of the executor's. Only what would fail every
task the same way stops the run before anything is created (exit 1, one line): a missing binary,
an authentication or billing failure, a usage limit that does not reset within ``max_wait``.
Anything else is taken for transient (a rate limit, an overloaded or failing API, a connection
error, a timeout, a crash without a result): it is retried with backoff (``BACKOFF`` s, doubling,
``TRIES`` prompts at most) and then let through with a notice: one overloaded minute at 2 a.m.
must not lose the night; the tasks' own retry policy deals with it. The whole check ends within
``LIMIT`` seconds (each prompt's timeout is cut to what is left), plus the ``--version`` call's
own bound.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path

import anyio

from supervisor.agents.base import NO_SETUP, OutputParser, Setup
from supervisor.agents.resets import reset_in
from supervisor.errors import PagentError
from supervisor.plan.model import AgentSpec
from supervisor.reasons import Reason
from supervisor.seam import AttemptKey, AttemptSpec, Executor, Stream

PROMPT = "pagent-run preflight: reply with the single word OK and do nothing else.\n"
TIMEOUT = 120.0  # seconds for the one-line prompt, API retries included
TRIES = 4  # one-line prompts at most, for transient failures
BACKOFF = 5.0  # seconds before the second try, doubling
LIMIT = 300.0  # seconds for all tries and backoffs together
_HANG_AFTER_RESULT = 5.0
# What would fail every task the same way: the run stops before anything is created.
FATAL = frozenset({Reason.AUTH, Reason.BILLING, Reason.USAGE_LIMIT, Reason.LAUNCH_FAILED})


class PreflightError(PagentError):
    """The agent cannot work now; no task was started."""


async def run_preflight(
    agent: AgentSpec,
    executor: Executor,
    key: AttemptKey,
    parser: OutputParser,
    env_defaults: Mapping[str, str] = {},
    *,
    max_wait: float = 0.0,
    new_parser: Callable[[], OutputParser] | None = None,
    notice: Callable[[str], None] = lambda message: None,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
    clock: Callable[[], float] = time.monotonic,
    argv: Sequence[str] | None = None,
    setup: Setup = NO_SETUP,
    tries: int = TRIES,
) -> str:
    """Check ``agent``: its version, then one prompt; return the version or raise
    ``PreflightError`` (see the module docstring for what is fatal and what is retried).

    ``key`` marks the preflight's processes like an attempt's, so the next run's crash
    recovery finds them if this supervisor dies meanwhile. ``sleep`` and ``clock`` measure
    the backoff and ``LIMIT`` (the tests give invented ones). ``argv`` (default: the agent's
    command and ``extra_args``) and ``setup`` are the prompt's, as the kind builds them;
    ``tries`` bounds the one-line prompts sent for transient failures.
    """
    try:
        found = await executor.version(agent.command, {**setup.env, **agent.env}, setup.home)
    except TimeoutError:
        raise PreflightError(f"agent {agent.name!r}: '{agent.command[0]} --version' did not answer") from None
    except OSError as exc:
        raise PreflightError(
            f"agent {agent.name!r}: cannot run {agent.command[0]!r}: {exc.strerror or exc}"
        ) from None
    env = {**setup.env, **env_defaults, **agent.env}
    prompt_argv = tuple(argv) if argv is not None else (*agent.command, *agent.extra_args)
    prompt_setup = Setup(env, setup.files, setup.home)
    delay = BACKOFF
    deadline = clock() + LIMIT
    for attempt in range(1, tries + 1):
        timeout = min(TIMEOUT, max(0.0, deadline - clock()))
        reason, detail, reset_in = await _one_prompt(
            prompt_argv, prompt_setup, executor, key, parser, timeout=timeout
        )
        if reason is None:
            return found
        what = f"agent {agent.name!r} preflight failed: {reason}{detail}"
        cls = Reason.of(reason)
        if cls is Reason.USAGE_LIMIT and reset_in is not None and reset_in <= max_wait:
            notice(f"{what}; it resets within max_wait: the tasks wait for it")
            return found
        if cls in FATAL:
            raise PreflightError(what)
        # Another try needs its backoff and some time to answer, inside the limit.
        if attempt == tries or deadline - clock() < delay + BACKOFF:
            notice(f"{what}; going on after {attempt} tries (the tasks retry by their policy)")
            return found
        notice(f"{what}; trying again in {delay:g}s")
        await sleep(delay)
        delay *= 2
        parser = new_parser() if new_parser is not None else parser
    return found  # pragma: no cover - the loop returns or raises


async def _one_prompt(
    argv: tuple[str, ...],
    setup: Setup,
    executor: Executor,
    key: AttemptKey,
    parser: OutputParser,
    *,
    timeout: float,
) -> tuple[str | None, str, float | None]:
    """Send the one-line prompt, waiting ``timeout`` seconds at most: ``(None, "", None)`` on
    success, else the reason, a detail and the seconds until a usage limit resets (when the
    agent said)."""
    with tempfile.TemporaryDirectory(prefix="pagent-preflight-") as scratch:
        prompt = Path(scratch) / "prompt.txt"
        prompt.write_text(PROMPT)
        spec = AttemptSpec(
            key=key,
            argv=argv,
            env=setup.env,
            cwd=None,
            prompt_file=prompt,
            files=setup.files,
            home=setup.home,
        )

        def on_output(data: bytes, stream: Stream) -> None:
            if stream is Stream.STDOUT:
                parser.feed(data)
            else:
                parser.feed_stderr(data)

        try:
            async with executor.start(spec, on_output) as handle:
                with anyio.move_on_after(timeout) as scope:
                    async with anyio.create_task_group() as tg:

                        async def stop_if_hanging() -> None:
                            while not parser.finished:  # noqa: ASYNC110 - the parser is plain data
                                await anyio.sleep(0.2)
                            await anyio.sleep(_HANG_AFTER_RESULT)
                            await handle.stop(2.0)

                        tg.start_soon(stop_if_hanging)
                        exit = await handle.wait()
                        tg.cancel_scope.cancel()
                if scope.cancelled_caught:
                    await handle.stop(2.0)
                    return Reason.API_TIMEOUT.value, f": no answer to a one-line prompt in {timeout:g}s", None
                await handle.finish(2.0)
        except OSError as exc:
            return Reason.LAUNCH_FAILED.value, f": cannot start: {exc.strerror or exc}", None
    outcome = parser.outcome(exit)
    if outcome.succeeded:
        return None, "", None
    text = str(outcome.metrics.get("result_text") or "").strip().splitlines()
    return outcome.reason, (f": {text[0][:200]}" if text else ""), reset_in(outcome.metrics, time.time())
