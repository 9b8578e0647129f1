"""Before a night of Claude tasks: is the CLI there, and does it answer one prompt?

For every agent with ``preflight`` on (Claude agents by default) that a run is about to use,
``check`` runs ``<command> --version`` and sends a one-line prompt through the same launcher the
tasks use, in a scratch directory. A missing binary, an authentication or billing failure, a
usage limit or a crash stops the run before any worktree exists (exit 1, one line), instead of
failing every task the same way at night.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import anyio

from supervisor.engine.attempt import new_parser
from supervisor.errors import PagentError
from supervisor.launch.proctree import COOKIE_VAR
from supervisor.launch.seam import AttemptSpec, Launcher, Stream
from supervisor.plan.model import AgentSpec

PROMPT = "pagent-run preflight: reply with the single word OK and do nothing else.\n"
TIMEOUT = 120.0  # seconds for the one-line prompt, API retries included
_HANG_AFTER_RESULT = 5.0


class PreflightError(PagentError):
    """The agent cannot work now; no task was started."""


def version(agent: AgentSpec) -> str:
    """``<command> --version``'s first line; ``PreflightError`` if the command does not exist."""
    try:
        done = subprocess.run(
            [agent.command[0], "--version"],
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (FileNotFoundError, PermissionError) as exc:
        raise PreflightError(
            f"agent {agent.name!r}: cannot run {agent.command[0]!r}: {exc.strerror}"
        ) from None
    except subprocess.TimeoutExpired:
        raise PreflightError(f"agent {agent.name!r}: '{agent.command[0]} --version' did not answer") from None
    lines = (done.stdout.strip() or done.stderr.strip()).splitlines()
    return lines[0] if lines and done.returncode == 0 else "unknown"


async def check(agent: AgentSpec, launcher: Launcher, env: dict[str, str], cookie: str) -> str:
    """Run the preflight of ``agent``; return its version or raise ``PreflightError``.

    ``cookie`` marks the preflight's processes like an attempt's, so that the next run's crash
    recovery finds them if this supervisor dies meanwhile.
    """
    found = await anyio.to_thread.run_sync(version, agent)
    parser = new_parser(agent.kind)
    with tempfile.TemporaryDirectory(prefix="pagent-preflight-") as scratch:
        prompt = Path(scratch) / "prompt.txt"
        prompt.write_text(PROMPT)
        spec = AttemptSpec(
            run_id="preflight",
            task_id="preflight",
            attempt=1,
            argv=(*agent.command, *agent.extra_args),
            cwd=Path(scratch),
            # The CLI retries a 401 like a 5xx, 10 times by default (about 3 minutes): bound it
            # here, unless the user set it, so a bad key is reported as such, not as a timeout.
            env={"CLAUDE_CODE_MAX_RETRIES": "4", **env, **agent.env, COOKIE_VAR: cookie},
            stdin_path=prompt,
            cookie=cookie,
        )

        def on_output(data: bytes, stream: Stream) -> None:
            if stream is Stream.STDOUT:
                parser.feed(data)

        try:
            async with launcher.start(spec, on_output) as handle:
                with anyio.move_on_after(TIMEOUT) as scope:
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
                    raise PreflightError(
                        f"agent {agent.name!r}: no answer to a one-line prompt in {TIMEOUT:g}s"
                    )
                await handle.finish(2.0)
        except OSError as exc:
            raise PreflightError(f"agent {agent.name!r}: cannot start: {exc.strerror or exc}") from None
    outcome = parser.outcome(exit)
    if not outcome.succeeded:
        text = str(outcome.metrics.get("result_text") or "").strip().splitlines()
        detail = f": {text[0][:200]}" if text else ""
        raise PreflightError(f"agent {agent.name!r} preflight failed: {outcome.reason}{detail}")
    return found
