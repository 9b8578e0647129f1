"""Regenerate the Codex, Gemini and opencode transcripts in ``tests/transcripts/<cli>/``.

Run from the repository root: ``python -m tests.transcripts.record_agents [-j N] [SELECTOR ...]``
where a selector is a CLI name (``codex``) or ``cli/scenario`` (``gemini/http-500``); none
means all.  Each scenario (``agent_scenarios.py``) drives the real CLI, installed by
`ensure_agent_cli`, against its scripted server on 127.0.0.1, headless, stdin closed, in a
scratch HOME/TMPDIR/XDG (and CODEX_HOME), and writes ``NAME.jsonl`` (stdout byte for byte)
and ``NAME.meta.json`` (argv, config files, exit code, timing, stderr tail, event types, files
left in the working directory, every request the server received).  Scratch paths, the
server's address and the install directory are replaced by ``$SCRATCH``, ``$SERVER`` and
``$CACHE`` in the metadata (not in the transcripts).  All of them take about seven minutes
with ``-j 3``: the default-retry and hung-server scenarios wait out the CLIs' own timers.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.agent_clis import SPECS, cache_root, ensure_agent_cli, run_agent
from tests.agent_envs import codex_launch, gemini_launch, opencode_launch
from tests.fake_gemini import FakeGemini
from tests.fake_openai import FakeOpenAI
from tests.transcripts.agent_scenarios import PROMPT, Scenario, scenarios

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tests.agent_envs import Launch
    from tests.fake_http import ScriptedServer

HERE = Path(__file__).resolve().parent
_STDERR_TAIL = 4000
_HIDDEN_ENV = {"PATH", "LANG"}


def _server(scenario: Scenario) -> ScriptedServer:
    kind = FakeGemini if scenario.cli == "gemini" else FakeOpenAI
    if scenario.when_exhausted is None:
        return kind(scenario.script)
    return kind(scenario.script, when_exhausted=scenario.when_exhausted)


def _launch(
    scenario: Scenario,
    executable: Path,
    server: ScriptedServer,
    root: Path,
    cwd: Path,
    *,
    resume: str | None = None,
) -> Launch:
    options = dict(scenario.options)
    extra = list(options.pop("extra_args", ()))
    if resume is not None:  # the exec options first, then the subcommand and its options
        extra += ["resume", resume]
    if scenario.schema is not None:
        schema = root / "schema.json"
        schema.write_text(json.dumps(scenario.schema))
        extra += ["--output-schema", str(schema)]
    if extra:
        options["extra_args"] = tuple(extra)
    if scenario.cli == "codex":
        return codex_launch(executable, f"{server.url}/v1", root, cwd, prompt=PROMPT, **options)
    if scenario.cli == "gemini":
        return gemini_launch(executable, server.url, root, cwd, prompt=PROMPT, **options)
    return opencode_launch(executable, f"{server.url}/v1", root, cwd, prompt=PROMPT, **options)


def _earlier_thread(scenario: Scenario, executable: Path, root: Path, cwd: Path) -> str:
    """Run the scenario's ``earlier`` script once (its own server, the same Codex home) and
    return the thread id it started, for the recorded run to resume."""
    with FakeOpenAI(scenario.earlier) as server:
        launch = _launch(scenario, executable, server, root, cwd)
        run = run_agent(launch.argv, cwd=cwd, env=launch.env, timeout_s=scenario.timeout_s)
    for line in run.stdout.splitlines():
        event = json.loads(line)
        if event.get("type") == "thread.started":
            return str(event["thread_id"])
    raise RuntimeError(f"{scenario.name}: the earlier run started no thread: {run.stderr[-500:]}")


def _headless_facts(body: dict[str, Any] | None, scenario: Scenario) -> dict[str, Any]:
    """For the structured and resumed scenarios: the answer format a request asked for, and
    what it said (the user's and the model's messages, the tool calls and their results)."""
    if body is None or (scenario.schema is None and not scenario.earlier):
        return {}
    facts: dict[str, Any] = {}
    text = body.get("text")
    if isinstance(text, dict) and isinstance(text.get("format"), dict):
        facts["text_format"] = {k: v for k, v in text["format"].items() if k != "schema"}
        facts["schema_sent_unchanged"] = text["format"].get("schema") == scenario.schema
    said = []
    for item in body.get("input") or []:
        if item.get("type") == "message" and item.get("role") in ("user", "assistant"):
            words = " ".join(str(part.get("text", "")) for part in item.get("content") or [])
            if not words.lstrip().startswith("<environment_context>"):
                said.append(f"{item['role']}: {words[:120]}")
        elif item.get("type") in ("function_call", "function_call_output"):
            said.append(str(item["type"]))
    facts["said"] = said
    return facts


def _event_types(stdout: str) -> list[str]:
    found = []
    for line in stdout.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            found.append("<non-json>")
            continue
        if not isinstance(event, dict):
            continue
        kind = str(event.get("type"))
        item = event.get("item")
        if isinstance(item, dict) and "type" in item:  # Codex: item.completed/command_execution
            kind += f"/{item['type']}"
        found.append(kind)
    return found


def record(scenario: Scenario, executable: Path) -> dict[str, Any]:
    """Run `scenario` once and write its transcript and metadata; return the metadata."""
    # Not under /tmp: Codex's workspace-write sandbox lets every command write /tmp, so a HOME
    # there would not be "outside the workspace"; and Codex refuses helper binaries under /tmp.
    scratch_root = cache_root() / "scratch"
    scratch_root.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=f"{scenario.cli}-", dir=scratch_root) as scratch,
        _server(scenario) as server,
    ):
        root = Path(scratch)
        cwd = root / "work"
        cwd.mkdir()
        if scenario.git_repo:
            subprocess.run(["git", "init", "-q", str(cwd)], check=True)
        resumed = _earlier_thread(scenario, executable, root, cwd) if scenario.earlier else None
        launch = _launch(scenario, executable, server, root, cwd, resume=resumed)
        env = {k: v for k, v in launch.env.items() if k not in scenario.drop_env}
        started = time.monotonic()
        run = run_agent(launch.argv, cwd=cwd, env=env, timeout_s=scenario.timeout_s)

        def clean(text: str) -> str:
            return (
                text.replace(scratch, "$SCRATCH")
                .replace(server.url, "$SERVER")
                .replace(str(cache_root()), "$CACHE")
            )

        meta = {
            "cli": scenario.cli,
            "version": SPECS[scenario.cli].version,
            "description": scenario.description,
            "argv": [clean(arg) for arg in run.argv],
            "env": {k: clean(v) for k, v in sorted(env.items()) if k not in _HIDDEN_ENV},
            "config_files": {name: clean(text) for name, text in launch.config_files.items()},
            "exit_code": run.returncode,
            "timed_out": run.timed_out,
            "timeout_s": scenario.timeout_s,
            "elapsed_s": round(run.elapsed_s, 2),
            "stderr_tail": clean(run.stderr[-_STDERR_TAIL:]),
            "event_types": _event_types(run.stdout),
            "files_created": sorted(
                str(p.relative_to(cwd)) for p in cwd.rglob("*") if ".git" not in p.relative_to(cwd).parts
            ),
            "requests": [
                {
                    "at_s": round(r.received_at - started, 2),
                    "method": r.method,
                    "path": r.path,
                    "script_index": r.script_index,
                    **_headless_facts(r.body, scenario),
                }
                for r in server.log
            ],
        }
        if resumed is not None:
            meta["resumed_thread"] = resumed
    folder = HERE / scenario.cli
    folder.mkdir(exist_ok=True)
    (folder / f"{scenario.name}.jsonl").write_text(run.stdout)
    (folder / f"{scenario.name}.meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _selected(selectors: Sequence[str]) -> list[Scenario]:
    chosen = [
        s for s in scenarios() if not selectors or s.cli in selectors or f"{s.cli}/{s.name}" in selectors
    ]
    known = {s.cli for s in scenarios()} | {f"{s.cli}/{s.name}" for s in scenarios()}
    unknown = sorted(set(selectors) - known)
    if unknown:
        raise SystemExit(f"unknown scenario(s): {', '.join(unknown)}")
    return chosen


def main(argv: Sequence[str]) -> int:
    """Record the selected scenarios, `jobs` at a time; return a process exit code."""
    parser = argparse.ArgumentParser(prog="python -m tests.transcripts.record_agents")
    parser.add_argument("-j", "--jobs", type=int, default=3, help="scenarios run at once (default 3)")
    parser.add_argument("selectors", nargs="*", help="CLI names or cli/scenario names")
    args = parser.parse_args(argv)
    chosen = _selected(args.selectors)
    executables: dict[str, Path] = {}
    for name in sorted({s.cli for s in chosen}):
        cli = ensure_agent_cli(name)
        if cli.path is None:
            print(f"cannot record {name}: {cli.reason}", file=sys.stderr)
            return 1
        executables[name] = cli.path
    # The longest first, so that the short ones fill the other slots meanwhile.
    chosen.sort(key=lambda s: -s.timeout_s)

    def one(scenario: Scenario) -> str:
        meta = record(scenario, executables[scenario.cli])
        exit_text = "killed (timeout)" if meta["timed_out"] else f"exit {meta['exit_code']}"
        return (
            f"{scenario.cli}/{scenario.name}: {exit_text} in {meta['elapsed_s']} s, "
            f"{len(meta['requests'])} request(s), {' '.join(meta['event_types'])}"
        )

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for done in as_completed([pool.submit(one, scenario) for scenario in chosen]):
            print(done.result(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
