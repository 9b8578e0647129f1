"""Containment (issue 12): nothing one task, a disk or a bug does crashes the run or leaves a
task ``running``.

The runner with a scripted executor and a fake clock, as in ``test_runner``; the full disk is
the real ``/dev/full`` (every write fails with ENOSPC), the bug a scripted executor that raises
what no executor should.
"""

from __future__ import annotations

import errno
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from supervisor.engine import events
from supervisor.engine.invocation import _bare
from supervisor.engine.logfile import DiskReserve, LogFile
from supervisor.engine.runner import Runner
from supervisor.engine.runs import new_run
from supervisor.engine.taskrun import RunContext
from supervisor.errors import StateError, UsageError
from supervisor.plan.model import Plan
from supervisor.reasons import Reason, mishap
from supervisor.seam import AttemptSpec, OutputCallback
from supervisor.state.layout import Layout
from supervisor.state.records import RunStatus
from supervisor.state.store import Store
from supervisor.ui.compose import KINDS, load_plan
from supervisor.workspace.git import RepoInfo
from tests.fakes import FakeClock, FakeExecutor, FakeHandle, Play

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def write_plan(tmp_path: Path, waves: list[list[str]], tasks: str = "", defaults: str = "") -> Plan:
    """Agent-less tasks (isolation "none"); ``tasks`` is TOML added to every task."""
    lines = ["jobs = 3", "[defaults]", 'agent = "demo"', 'isolation = "none"', "retries = 2", defaults]
    for w, ids in enumerate(waves):
        lines += ["[[waves]]", f'name = "w{w + 1}"']
        for task_id in ids:
            lines += ["[[waves.tasks]]", f'id = "{task_id}"', f'prompt = "do {task_id}"', tasks]
    path = tmp_path / "plan.toml"
    path.write_text("\n".join(lines) + "\n")
    return load_plan(path)


class Broken(FakeExecutor):
    """A scripted executor that raises ``error`` when it is asked to start ``task``."""

    def __init__(self, task: str, error: Exception, **kwargs: object) -> None:
        super().__init__({}, **kwargs)  # type: ignore[arg-type]
        self.task, self.error = task, error

    @asynccontextmanager
    async def start(self, spec: AttemptSpec, on_output: OutputCallback) -> AsyncIterator[FakeHandle]:
        if spec.task_id == self.task:
            await anyio.lowlevel.checkpoint()
            raise self.error
        async with super().start(spec, on_output) as handle:
            yield handle


class Lab:
    def __init__(self, tmp_path: Path, plan: Plan, executor: FakeExecutor) -> None:
        self.plan, self.executor = plan, executor
        self.store = Store(tmp_path / "state.db")
        self.events: list[events.Event] = []
        repo = RepoInfo(root=tmp_path, base_ref="HEAD", base_commit="0" * 40)
        self.clock = FakeClock()
        self.state = new_run(plan, self.store, repo, self.clock.time())
        self.layout = Layout.of(plan)
        self.reserve = DiskReserve(tmp_path / ".reserve", size=4096)
        context = RunContext(plan, self.layout, tmp_path, "0" * 40, self.reserve)
        self.runner = Runner(
            context,
            self.state,
            executor,
            KINDS,
            clock=self.clock,
            emit=self.events.append,
            rng=random.Random(),
        )

    def states(self) -> dict[str, tuple[str, str | None]]:
        return {r.task_id: (r.state.value, r.reason) for r in self.store.tasks(self.state.run_id)}

    def open_attempts(self) -> list[str]:
        return [a.task_id for a in self.store.open_attempts(self.state.run_id)]


async def test_a_bug_in_one_task_fails_that_task_only(tmp_path: Path) -> None:
    """The executor raises KeyError for "boom": boom fails with supervisor-error, its attempt is
    ended, the wave's other tasks succeed, its dependant is not_run; nothing stays running."""
    write_plan(tmp_path, [["boom", "ok1", "ok2", "dep"]])
    plan_text = (
        (tmp_path / "plan.toml")
        .read_text()
        .replace('prompt = "do dep"', 'prompt = "do dep"\ndepends_on = ["boom"]')
    )
    (tmp_path / "plan.toml").write_text(plan_text)
    lab = Lab(tmp_path, load_plan(tmp_path / "plan.toml"), Broken("boom", KeyError("surprise")))
    with anyio.fail_after(10):
        status = await lab.runner.execute()
    assert status is RunStatus.FAILED
    states = lab.states()
    assert states["boom"] == ("failed", "supervisor-error: KeyError: 'surprise'")
    assert states["ok1"] == states["ok2"] == ("succeeded", "ok")
    assert states["dep"] == ("not_run", "dependency boom failed")
    assert lab.open_attempts() == []
    assert [a.reason for a in lab.store.attempts(lab.state.run_id, "boom")] == [
        "supervisor-error: KeyError: 'surprise'"
    ]
    finished = [e.task_id for e in lab.events if isinstance(e, events.TaskFinished)]
    assert sorted(finished) == ["boom", "dep", "ok1", "ok2"]


async def test_a_run_directory_an_agent_replaced_fails_the_tasks_with_io_error(tmp_path: Path) -> None:
    """The run's ``prompts`` folder is a file: no prompt can be written. Each task fails with
    io-error naming the path; the run ends failed, nothing running, the later wave not_run."""
    plan = write_plan(tmp_path, [["a", "b"], ["c"]])
    lab = Lab(tmp_path, plan, FakeExecutor({}))
    run_dir = lab.layout.run_dir(lab.state.run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "prompts").write_text("an agent put a file here\n")
    with anyio.fail_after(10):
        assert await lab.runner.execute() is RunStatus.FAILED
    states = lab.states()
    for task in ("a", "b"):
        state, reason = states[task]
        assert state == "failed"
        assert reason is not None
        assert reason.startswith("io-error: ")
        assert "prompts" in reason
    assert states["c"][0] == "not_run"
    assert lab.executor.log == []  # no agent was started without its prompt


async def test_a_log_on_a_full_disk_stops_the_attempt_with_disk_full(tmp_path: Path) -> None:
    """The attempt's log is /dev/full: the agent (which would hang) is stopped, the task fails
    with disk-full after one attempt (never retried), the reserve is given up."""
    plan = write_plan(tmp_path, [["t", "quiet"]])
    lab = Lab(tmp_path, plan, FakeExecutor({"t": [Play(output=[b"x" * 100 + b"\n"], hang=True)]}))
    lab.reserve.hold()
    assert lab.reserve.held
    log = lab.layout.log(lab.state.run_id, "t", 1)
    log.parent.mkdir(parents=True)
    log.symlink_to("/dev/full")
    with anyio.fail_after(10):
        await lab.runner.execute()
    assert lab.states()["t"] == ("failed", "disk-full")
    assert sum(lab.clock.slept) < 60  # stopped at the next tick, not at its 45-minute timeout
    assert lab.states()["quiet"] == ("succeeded", "ok")
    assert [a.reason for a in lab.store.attempts(lab.state.run_id, "t")] == ["disk-full"]
    assert not lab.reserve.held
    assert not (tmp_path / ".reserve").exists()


async def test_verify_holds_with_isolation_none(tmp_path: Path) -> None:
    """verify runs where the agent ran (the repository) and a failing verify fails the task."""
    plan = write_plan(tmp_path, [["t", "good"]], tasks='verify = ["check"]\nretries = 0')
    lab = Lab(tmp_path, plan, FakeExecutor({}, verify={"t": [1], "good": [0]}))
    await lab.runner.execute()
    assert lab.states() == {"t": ("failed", "verify"), "good": ("succeeded", "ok")}


async def test_when_the_run_itself_cannot_go_on_every_task_ends(tmp_path: Path) -> None:
    """Something outside any task fails (here: the event sink, at the second wave's start): the
    run ends failed, the first wave's outcomes stand, the second wave is not_run."""
    plan = write_plan(tmp_path, [["a"], ["b"]])
    lab = Lab(tmp_path, plan, FakeExecutor({}))

    def emit(event: events.Event) -> None:
        if isinstance(event, events.WaveStarted) and event.index == 1:
            raise RuntimeError("the sink broke")
        lab.events.append(event)

    lab.runner.emit = emit
    with anyio.fail_after(10):
        assert await lab.runner.execute() is RunStatus.FAILED
    assert lab.states() == {
        "a": ("succeeded", "ok"),
        "b": ("not_run", "supervisor-error: RuntimeError: the sink broke"),
    }
    assert lab.store.run(lab.state.run_id).status is RunStatus.FAILED  # type: ignore[union-attr]


# -- the parts -------------------------------------------------------------------------------


def test_a_log_that_cannot_be_written_never_raises(tmp_path: Path) -> None:
    freed: list[bool] = []
    log = LogFile(Path("/dev/full"), on_full=lambda: freed.append(True))
    log.write(b"first line\n")
    log.write(b"second\n")
    log.note("stopping")
    log.close()
    assert log.failure == "disk-full"
    assert log.dropped == len(b"first line\nsecond\n") + len(b"\n[pagent] stopping\n")
    assert log.last_line == "second"  # the live view still sees it
    assert freed == [True]  # once


def test_the_reserve_holds_real_blocks_and_gives_them_back_once(tmp_path: Path) -> None:
    reserve = DiskReserve(tmp_path / ".reserve", size=256 * 1024)
    reserve.hold()
    info = (tmp_path / ".reserve").stat()
    assert info.st_size == 256 * 1024
    assert info.st_blocks * 512 >= 256 * 1024  # allocated, not sparse
    assert reserve.release() is True
    assert reserve.release() is False
    assert not (tmp_path / ".reserve").exists()


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "disk-full"),
        (OSError(errno.EDQUOT, "Disk quota exceeded"), "disk-full"),
        (StateError("state.db: the disk is full", disk_full=True), "disk-full"),
        (NotADirectoryError(errno.ENOTDIR, "Not a directory", "/x/prompts/a.1.txt"), "io-error: "),
        (StateError("cannot write state.db"), "io-error: cannot write state.db"),
        (KeyError("k"), "supervisor-error: KeyError: 'k'"),
        (ExceptionGroup("g", [ExceptionGroup("h", [ValueError("deep\nline")])]), "supervisor-error: "),
    ],
)
def test_mishap_names_each_class(error: Exception, reason: str) -> None:
    found = mishap(error)
    assert found.startswith(reason)
    assert "\n" not in found
    assert Reason.of(found) in (Reason.DISK_FULL, Reason.IO_ERROR, Reason.SUPERVISOR_ERROR)


def test_nested_exception_groups_give_the_cli_the_bare_error() -> None:
    usage = UsageError("no run yet")
    assert _bare(ExceptionGroup("a", [ExceptionGroup("b", [usage])])) is usage
    assert _bare(ExceptionGroup("a", [ExceptionGroup("b", [ValueError("x")]), usage])) is usage
    lone = KeyError("x")
    assert _bare(ExceptionGroup("a", [ExceptionGroup("b", [lone])])) is lone
