"""A workspace's hooks: ``setup``, ``before_attempt`` and ``teardown`` commands, run like verify.

Each command is an argv (never a shell) started through the executor's ``start`` in the agent's
working directory, wherever the workspace is (so a remote executor runs it there too), with
pagent's ``PAGENT_*`` variables (not the agent's ``env``: its keys and endpoints are the
agent's), under the attempt's confinement when it has one (``sandbox``), stdin empty, its own
process tree, at most ``timeout`` seconds (then its tree is
stopped), its output appended to the given log after a ``[pagent] <hook>: <command>`` line.
The commands of one hook run in order; the first that fails ends the hook.

``run_hooks`` returns ``None`` when every command exited 0, else the reason: ``setup: ...``
(``Reason.SETUP`` with what failed: "`make deps` exit 2", "before_attempt `./check` timed out
after 600s") or ``interrupted`` when a stop came first (the command is stopped at once).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import replace

import anyio

from supervisor.engine.gate import Stop
from supervisor.engine.logfile import LogFile
from supervisor.reasons import Reason
from supervisor.seam import AttemptSpec, Executor, Stream

_SHOWN = 200  # characters of a command shown in a reason


async def run_hooks(
    hook: str,
    commands: Sequence[Sequence[str]],
    *,
    spec: AttemptSpec,
    timeout: float,
    grace: float,
    log: LogFile,
    executor: Executor,
    stop: Stop,
) -> str | None:
    """Run ``commands`` of ``hook`` ("setup", "before_attempt", "teardown") where ``spec`` runs;
    see the module docstring."""
    for argv in commands:
        failed = await _run_one(hook, argv, spec=spec, timeout=timeout, grace=grace, log=log,
                                executor=executor, stop=stop)  # fmt: skip
        if failed is not None:
            return failed
    return None


async def _run_one(
    hook: str,
    argv: Sequence[str],
    *,
    spec: AttemptSpec,
    timeout: float,
    grace: float,
    log: LogFile,
    executor: Executor,
    stop: Stop,
) -> str | None:
    """One command of a hook; ``None`` if it exited 0, else the reason."""
    env = {name: value for name, value in spec.env.items() if name.startswith("PAGENT_")}
    # The attempt's place and confinement (a sandboxed attempt's hooks run what the agent may
    # have written: a Makefile, a script), without its prompt, config files or kept home.
    hook_spec = replace(spec, argv=tuple(argv), env=env, prompt_file=None, files={}, home=None)
    shown = shlex.join(argv)
    what = f"`{shown[:_SHOWN]}`" if hook == "setup" else f"{hook} `{shown[:_SHOWN]}`"
    log.note(f"{hook}: {shown}")

    def on_output(data: bytes, stream: Stream) -> None:
        log.write(data)

    stopped = False
    try:
        async with executor.start(hook_spec, on_output) as handle:
            with anyio.move_on_after(timeout) as scope:
                async with anyio.create_task_group() as tg:

                    async def watch() -> None:
                        nonlocal stopped
                        await stop.wait()
                        stopped = True
                        tg.cancel_scope.cancel()

                    tg.start_soon(watch)
                    exit = await handle.wait()
                    tg.cancel_scope.cancel()
            if stopped or scope.cancelled_caught:
                await handle.stop(grace)
                if stopped:
                    log.note(f"{hook}: stopped (pagent-run was stopped)")
                    return Reason.INTERRUPTED.value
                log.note(f"{hook}: timed out after {timeout:g}s")
                return Reason.SETUP.detail(f"{what} timed out after {timeout:g}s")
            await handle.finish(grace)
    except OSError as exc:
        log.note(f"{hook}: cannot start: {exc.strerror or exc}")
        return Reason.SETUP.detail(f"{what} cannot start: {exc.strerror or exc}")
    how = f"signal {exit.signal_name}" if exit.signal_name else f"exit {exit.code}"
    log.note(f"{hook}: {how}")
    return None if exit.code == 0 and exit.signal is None else Reason.SETUP.detail(f"{what} {how}")
