"""The local executor's side of the seam's files and homes, with real processes.

An attempt's ``files`` are written into a private directory of its own before the agent starts,
``{attempt_dir}`` and ``{agent_home}`` in its environment name that directory and the agent's
kept one, ``PWD`` is its working directory, and the attempt's directory is gone once the attempt
ends while the kept one stays (what the agent wrote there too). ``version`` fills the same
placeholders, so a CLI that writes its state even for ``--version`` writes it there.
``{attempt_dir}`` in the argv names the same directory (a file given on the command line),
with and without the sandbox.
"""

from __future__ import annotations

import json
import os
import stat
import sys
import time
from pathlib import Path

import pytest

from supervisor.launch.local import LocalExecutor
from supervisor.launch.sandbox import sandbox_problem
from supervisor.seam import AGENT_HOME, ATTEMPT_DIR, AttemptKey, AttemptSpec, Confinement, Stream
from supervisor.workspace.local import Worktrees

pytestmark = [pytest.mark.slow, pytest.mark.anyio]

# The agent: reports what it found where the attempt runs, and leaves a file in its kept home.
PROBE = """
import json, os, pathlib, stat, sys
attempt = pathlib.Path(os.environ["CONFIG"]).parent
home = pathlib.Path(os.environ["STATE"])
home.mkdir()
(home / "left-behind.txt").write_text("kept")
print(json.dumps({
    "config": pathlib.Path(os.environ["CONFIG"]).read_text(),
    "nested": (attempt / "deep" / "er" / "f.json").read_text(),
    "file_mode": stat.S_IMODE(os.stat(os.environ["CONFIG"]).st_mode),
    "dir_mode": stat.S_IMODE(os.stat(attempt).st_mode),
    "attempt_dir": str(attempt),
    "home": str(home),
    "pwd": os.environ["PWD"],
    "cwd": os.getcwd(),
    "plain": os.environ["PLAIN"],
}))
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def run(executor: LocalExecutor, spec: AttemptSpec) -> dict[str, str]:
    out: list[bytes] = []

    def on_output(data: bytes, stream: Stream) -> None:
        if stream is Stream.STDOUT:
            out.append(data)

    async with executor.start(spec, on_output) as handle:
        exit = await handle.wait()
        await handle.finish(2.0)
    assert exit.code == 0, b"".join(out)
    found: dict[str, str] = json.loads(b"".join(out))
    return found


async def test_files_and_homes_where_the_agent_runs(tmp_path: Path) -> None:
    homes = tmp_path / "homes"
    executor = LocalExecutor(Worktrees(), homes=homes)
    work = tmp_path / "work"
    work.mkdir()
    key = AttemptKey(f"test-dirs-{os.getpid()}-{time.monotonic_ns()}", "r", "t", 1)
    spec = AttemptSpec(
        key=key,
        argv=(sys.executable, "-c", PROBE),
        env={
            "CONFIG": f"{ATTEMPT_DIR}/settings.json",
            "STATE": f"{AGENT_HOME}/state-of-mine",
            "PLAIN": "no {placeholder} here",
        },
        cwd=work,
        prompt_file=None,
        files={"settings.json": b'{"a": 1}\n', "deep/er/f.json": b"{}"},
        home="agent-a",
    )
    found = await run(executor, spec)
    assert found["config"] == '{"a": 1}\n'
    assert found["nested"] == "{}"
    assert (found["file_mode"], found["dir_mode"]) == (0o600, 0o700)
    assert found["home"] == str(homes / "agent-a" / "state-of-mine")
    assert found["pwd"] == found["cwd"] == str(work)
    assert found["plain"] == "no {placeholder} here"
    # The attempt's directory went with the attempt; the kept home stayed, with what was left there.
    assert not Path(found["attempt_dir"]).exists()
    assert (homes / "agent-a" / "state-of-mine" / "left-behind.txt").read_text() == "kept"
    assert stat.S_IMODE((homes / "agent-a").stat().st_mode) == 0o700
    # A second attempt gets a fresh directory of its own (and finds the kept one as it was).
    (homes / "agent-a" / "state-of-mine" / "left-behind.txt").unlink()
    (homes / "agent-a" / "state-of-mine").rmdir()
    again = await run(executor, spec)
    assert again["attempt_dir"] != found["attempt_dir"]


async def test_a_file_outside_the_attempt_directory_is_refused(tmp_path: Path) -> None:
    executor = LocalExecutor(Worktrees(), homes=tmp_path / "homes")
    for name in ("../escape.json", "/etc/x", ""):
        spec = AttemptSpec(
            key=AttemptKey("p", "r", "t", 1),
            argv=("true",),
            env={},
            cwd=tmp_path,
            prompt_file=None,
            files={name: b"x"},
        )
        with pytest.raises(ValueError, match="inside the attempt's directory"):
            async with executor.start(spec, lambda data, stream: None):
                pytest.fail("started")
    assert not (tmp_path / "escape.json").exists()


async def test_version_fills_the_placeholders(tmp_path: Path) -> None:
    """A CLI that writes its state for --version writes it into the agent's kept home."""
    homes = tmp_path / "homes"
    script = tmp_path / "cli"
    script.write_text('#!/bin/sh\necho "cli 1.2.3 $STATE"\ntouch "$STATE/by-version"\n')
    script.chmod(0o755)
    executor = LocalExecutor(Worktrees(), homes=homes)
    found = await executor.version([str(script)], {"STATE": AGENT_HOME}, "agent-b")
    assert found == f"cli 1.2.3 {homes / 'agent-b'}"
    assert (homes / "agent-b" / "by-version").exists()


# The agent: reads the file its argv names and says where it is.
ARGV_PROBE = """
import json, pathlib, stat, sys
path = pathlib.Path(sys.argv[2])
print(json.dumps({"flag": sys.argv[1], "schema": path.read_text(), "where": str(path.parent),
                  "mode": stat.S_IMODE(path.stat().st_mode), "plain": sys.argv[3]}))
"""


@pytest.mark.parametrize("confined", [False, True], ids=["plain", "sandboxed"])
async def test_the_argv_names_the_attempt_directory(tmp_path: Path, confined: bool) -> None:
    """``{attempt_dir}`` in an argv element (Codex's ``--output-schema FILE``) is the attempt's
    own directory, made even when no env value names it, and readable inside the sandbox."""
    if confined and (problem := sandbox_problem()) is not None:
        if os.environ.get("PAGENT_REQUIRE_SANDBOX") == "1":
            pytest.fail(f"PAGENT_REQUIRE_SANDBOX=1 but: {problem}")
        pytest.skip(f"no sandbox on this machine: {problem}")
    spec = AttemptSpec(
        key=AttemptKey(f"test-argv-{os.getpid()}-{time.monotonic_ns()}", "r", "t", 1),
        argv=(sys.executable, "-c", ARGV_PROBE, "--output-schema", f"{ATTEMPT_DIR}/schema.json", "{other}"),
        env={},
        cwd=None,  # a scratch directory (under the temp dir, which the sandbox hides otherwise)
        prompt_file=None,
        files={"schema.json": b'{"type": "object"}'},
        confinement=Confinement(read_only=(Path(sys.prefix), Path(sys.base_prefix))) if confined else None,
    )
    found = await run(LocalExecutor(Worktrees(), homes=tmp_path / "homes"), spec)
    assert (found["flag"], found["schema"], found["plain"]) == (
        "--output-schema",
        '{"type": "object"}',
        "{other}",
    )
    assert found["mode"] == 0o600
    assert Path(found["where"]).name.startswith("pagent-attempt-")
    assert not Path(found["where"]).exists()  # gone with the attempt
