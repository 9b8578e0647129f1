"""The executor seam holds: a scripted executor (not the local one) runs a whole invocation.

Two waves with retries, a verify step and the crash-recovery sweep of a dead earlier run go
through ``execute_plan`` exactly as the CLI calls it, in a fresh interpreter whose audit hook
records every look at ``/proc``; afterwards neither ``/proc`` was read nor psutil imported, and
no attempt record carries a local pid. That is what a remote executor (Ray, say) needs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import tomli_w

from tests.conftest import git

DRIVER = r"""
import json, sys

touched = []

def audit(event, args):
    if event in ("open", "os.listdir", "os.scandir") and args and str(args[0]).startswith("/proc"):
        touched.append((event, str(args[0])))

sys.addaudithook(audit)

import anyio
from pathlib import Path
from supervisor.engine.invocation import execute_plan
from supervisor.engine.runstate import REF_DELAY, RunState
from supervisor.state.layout import Layout
from supervisor.state.records import AttemptRecord, RunRecord, TaskRecord
from supervisor.state.store import Store
from supervisor.ui.compose import KINDS, load_plan
from tests.fakes import FakeExecutor, Play

plan = load_plan(sys.argv[1])
layout = Layout.of(plan)
layout.ensure()
store = Store(layout.database)
# A dead earlier run: recorded running, one attempt open, its supervisor gone.
dead = RunRecord("20261130-020000.000-dead", plan.key, plan.name, str(plan.path), started_at=1.0)
state = RunState.create(store, dead, [TaskRecord(dead.run_id, "a", 0, "one")])
anyio.run(state.begin_attempt, AttemptRecord(dead.run_id, "a", 1, 2.0, "log", "cookie"), 2.0)
async def running() -> None:
    state.attempt_running("a", 1, "fake-dead-1", None)
    await anyio.sleep(REF_DELAY * 2)  # asked by now (an attempt that ends sooner writes it with its end)
    await state._refs[("a", 1)]  # committed before the store is closed
anyio.run(running)
store.close()

executor = FakeExecutor(
    {"a": [Play(code=1), Play(code=0, changed=("a.txt",))], "b": [Play(changed=("b.txt",))],
     "c": [Play(changed=("c.txt",))]},
    verify={"b": [1, 0]},
    leftovers=["fake-dead-1"],
)
notes = []
result = anyio.run(lambda: execute_plan(plan, executor=executor, kinds=KINDS, emit=notes.append))
store = Store(layout.database)
attempts = store.attempts(result.run_id)
print(json.dumps({
    "exit": result.exit_code,
    "tasks": {t["id"]: [t["state"], t["attempts"], t["reason"]] for t in result.view["tasks"]},
    "attempts": [[a.task_id, a.number, a.reason, a.pid, a.ref] for a in attempts],
    "dead": [[r.task_id, r.state.value] for r in store.tasks(dead.run_id)],
    "swept": [[p, list(r)] for p, r in executor.swept],
    "verify": [e for e in executor.log if e[0] == "verify"],
    "order": [e[1] for e in executor.log if e[0] == "start"],
    "proc": touched,
    "psutil": "psutil" in sys.modules,
    "notes": [getattr(n, "message", "") for n in notes],
}))
"""


def test_a_scripted_executor_runs_waves_retries_verify_and_recovery_without_proc(
    repo: Path, tmp_path: Path
) -> None:
    plan = repo / "plan.toml"
    table = {
        "jobs": 2,
        "defaults": {"agent": "demo", "retries": 1, "retry_delay": 0, "verify": ["make", "check"]},
        "waves": [
            {"name": "one", "tasks": [{"id": "a", "prompt": "do a"}, {"id": "b", "prompt": "do b"}]},
            {"name": "two", "tasks": [{"id": "c", "prompt": "do c", "depends_on": ["a"]}]},
        ],
    }
    plan.write_text(tomli_w.dumps(table))
    git(repo, "add", "plan.toml")
    git(repo, "commit", "-q", "-m", "plan")
    root = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, str(plan)],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout.splitlines()[-1])
    assert facts["exit"] == 0
    assert facts["tasks"] == {
        "a": ["succeeded", 2, "ok"],
        "b": ["succeeded", 2, "ok"],
        "c": ["succeeded", 1, "ok"],
    }
    reasons = {(task, n): reason for task, n, reason, _, _ in facts["attempts"]}
    assert reasons == {("a", 1): "exit 1", ("a", 2): "ok", ("b", 1): "verify", ("b", 2): "ok", ("c", 1): "ok"}
    # Every attempt is known by the executor's reference, none by a local pid.
    assert all(pid is None and ref.startswith("fake-") for _, _, _, pid, ref in facts["attempts"])
    # The dead run was repaired and its leftover swept by the executor, by plan key and reference.
    assert facts["dead"] == [["a", "interrupted"]]
    ((prefix, refs),) = facts["swept"]
    assert prefix.endswith(":")
    assert refs == ["fake-dead-1"]
    assert any("stopped 1 leftover" in note for note in facts["notes"])
    # verify ran after each successful agent attempt of b (exit 1, then 0) and of a and c.
    assert [tuple(v[1:]) for v in facts["verify"]].count(("b", 1)) == 1
    assert facts["order"].index("c") > max(i for i, t in enumerate(facts["order"]) if t in "ab")
    assert facts["proc"] == []
    assert facts["psutil"] is False
