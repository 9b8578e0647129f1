"""What an attempt costs on Ray against a local one, measured through each executor's seam.

For each executor, ``REPS`` attempts of one task (a tiny agent that prints a line, commits a file,
prints the time and exits) go through ``prepare``/``begin``/``start``/``collect`` as the engine
calls them. Measured per attempt:

- *start to first output*: from the call of ``start`` to the agent's first byte at ``on_output``;
- *end to exit*: from the agent's last line (the time it printed) to ``wait`` returning;
- *end to result*: ... to ``finish`` returning (on Ray: the node program's auto-commit and push
  are done, its RESULT record read);
- *attempt*: ``begin`` to ``collect`` returned (the commit home in the plan's repository);
- *stop to exit*: a sleeping agent (another task) stopped once it printed: ``stop`` to ``wait``.

The medians are written to ``ray-overhead.json`` in the test's directory and printed (``-s``);
the asserted bounds are loose (a loaded 2-core machine): they catch a broken stream, not a slow one.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from supervisor.launch.local import LocalExecutor
from supervisor.launch.ray import RayExecutor
from supervisor.plan.model import ExecutorConfig
from supervisor.seam import (
    AttemptKey,
    AttemptSpec,
    AttemptSteps,
    CollectRequest,
    Executor,
    Stream,
    WorkspaceRequest,
)
from supervisor.workspace.local import LocalWorkspaces, Worktrees
from supervisor.workspace.remote import RemoteBranches
from tests.conftest import git
from tests.ray_head import RayHead

pytestmark = [pytest.mark.slow, pytest.mark.ray]
REPS = 5
AGENT = (
    "import subprocess, sys, time; sys.stdin.read(); print('first', flush=True);"
    "open('n.txt', 'a').write('x'); subprocess.run(['git', 'add', 'n.txt'], check=True);"
    "subprocess.run(['git', 'commit', '-qm', 'n'], check=True); print('end', repr(time.time()), flush=True)"
)


async def measure(executor: Executor, repo: Path, where: Path, uid: str) -> list[dict[str, float]]:
    """``REPS`` attempts of one task through ``executor``; their times (see the module docstring)."""
    run_id, branch = "r1", "pagent/p/t"
    pins = f"refs/pagent/{run_id}/t"
    base = git(repo, "rev-parse", "main").strip()
    git(repo, "branch", branch, base)
    request = WorkspaceRequest(repo, where, branch, base, expect=base, fresh=True, pins=pins, kind="worktree")
    workspace = await executor.prepare(request)
    prompt = where.parent.parent / f"prompt-{where.parent.name}.txt"
    prompt.write_text("go\n")
    times = []
    for attempt in range(1, REPS + 1):
        begin = time.monotonic()
        begun = await executor.begin(workspace, None)
        key = AttemptKey(uid, run_id, "t", attempt)
        spec = AttemptSpec(
            key,
            (sys.executable, "-c", AGENT),
            {"PAGENT_WAVE": "w"},
            workspace.cwd or workspace.path,
            prompt,
            workspace=workspace,
            steps=AttemptSteps(kill_grace=1.0, sample_every=1.0),
        )
        first: list[float] = []
        out = bytearray()

        def on_output(data: bytes, stream: Stream, first: list[float] = first, out: bytearray = out) -> None:
            first.append(time.monotonic())
            out.extend(data)

        started = time.monotonic()
        async with executor.start(spec, on_output) as handle:
            await handle.wait()
            exited = time.time()
            await handle.finish(1.0)
            finished = time.time()
        ended = float(bytes(out).split(b"end ")[-1].split()[0])
        collect = CollectRequest("t", attempt, "ok", begun.head, base, True, None, pins=pins)
        facts = await executor.collect(workspace, collect)
        assert facts.branch_tip is not None
        assert facts.diff is not None
        assert facts.diff.commits == attempt  # each attempt's commit home, on top of the last
        times.append(
            {
                "start_to_first_output": first[0] - started,
                "end_to_exit": exited - ended,
                "end_to_result": finished - ended,
                "attempt": time.monotonic() - begin,
                "stop_to_exit": await stopped(executor, spec, attempt + 100),
            }
        )
    return times


async def stopped(executor: Executor, spec: AttemptSpec, attempt: int) -> float:
    """An agent that sleeps, stopped once it runs: seconds from ``stop`` to ``wait`` returning."""
    assert spec.workspace is not None
    await executor.begin(spec.workspace, None)  # the remote's branch where the last attempt left it
    key = AttemptKey(spec.key.plan, spec.key.run_id, "stop", attempt)
    sleeper = replace(
        spec, key=key, argv=(sys.executable, "-c", "print('up', flush=True); import time; time.sleep(60)")
    )
    up = anyio.Event()
    seen = bytearray()

    def on_output(data: bytes, stream: Stream) -> None:
        seen.extend(data)
        if b"up" in seen:
            up.set()

    async with executor.start(sleeper, on_output) as handle:
        with anyio.fail_after(60):
            await up.wait()
        asked = time.monotonic()
        await handle.stop(1.0)
        await handle.wait()
        took = time.monotonic() - asked
        await handle.finish(1.0)
    return took


def medians(times: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(statistics.median(t[name] for t in times), 3) for name in times[0]}


def run_both(tmp_path: Path, repo: Path, head: RayHead) -> dict[str, Any]:
    origin = tmp_path / "origin.git"
    git(tmp_path, "clone", "--quiet", "--bare", str(repo), str(origin))
    git(repo, "remote", "add", "origin", str(origin))
    config = ExecutorConfig(kind="ray", address=head.address, python=sys.executable)

    def ray() -> Executor:
        return RayExecutor(RemoteBranches(repo, "origin"), config, plan_uid="0verhead0000", label="p", jobs=1)

    def local() -> Executor:
        return LocalExecutor(LocalWorkspaces({"worktree": Worktrees()}), homes=tmp_path / "homes")

    results: dict[str, Any] = {}
    made: dict[str, Callable[[], Executor]] = {"local": local, "ray": ray}
    for name, make in made.items():
        other = tmp_path / f"repo-{name}"
        git(tmp_path, "clone", "--quiet", str(repo), str(other))
        git(other, "remote", "set-url", "origin", str(origin)) if name == "ray" else None
        times = anyio.run(
            measure, make(), other, tmp_path / f"wt-{name}" / "t", "0verhead0000", backend="asyncio"
        )
        results[name] = {"median": medians(times), "all": times}
    return results


def test_overhead_of_an_attempt_on_ray_against_local(tmp_path: Path, repo: Path, ray_head: RayHead) -> None:
    results = run_both(tmp_path, repo, ray_head)
    (tmp_path / "ray-overhead.json").write_text(json.dumps(results, indent=2))
    for name, found in results.items():
        print(f"\n{name}: medians of {REPS} attempts (s): {found['median']}")
    ray, local = results["ray"]["median"], results["local"]["median"]
    assert local["start_to_first_output"] < 5
    assert ray["start_to_first_output"] < 20
    assert ray["end_to_result"] < 10
