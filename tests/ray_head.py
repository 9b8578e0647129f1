"""A real Ray head on 127.0.0.1 for the tests: session-scoped, small, stopped without survivors.

The fixture ``ray_head`` (registered in ``tests/conftest.py``: one head per session) starts
``ray start --head`` with the flags of ``/work/shared/RAY.md``: every port on 127.0.0.1 (free
ports chosen here), two CPUs, ``agent_slot = 2``, a 75 MiB object store, no usage stats, its own
short temp dir (which also holds the node's workspace cache, ``PAGENT_NODE_CACHE``). It waits
(bounded) until the Jobs API has run a first job and yields a ``RayHead``. It is skipped, naming
the reason, only where ``ray`` cannot be imported; with ``PAGENT_REQUIRE_RAY=1`` (CI) it fails
instead.

Stopping does not use ``ray stop``: that stops every Ray process on the machine, someone else's
head included. Every process of this head carries ``PAGENT_RAY_HEAD=<mark>`` in its environment
from ``ray start`` on (jobs inherit it too), but Ray's Python services rename themselves with
setproctitle, which blanks ``/proc/PID/environ``. So the head's processes are those with the mark,
their descendants, and those whose command line names the head's temp dir; they get SIGTERM,
then SIGKILL after 2 s, looked for again until none is left (bounded), and the teardown fails
naming any survivor. (Measured: after SIGTERM the raylet takes 13 s to go, and gcs_server and the
autoscaler monitor were still alive after 30 s; a test head holds nothing worth a clean stop.)
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

SLOTS = 2
START_TIMEOUT = 120.0  # ray start itself, then the first job (33 s on a cold machine)
_PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--runtime-env-agent-port",
    "--metrics-export-port",
    "--node-manager-port",
    "--object-manager-port",
)


@dataclass(frozen=True)
class RayHead:
    """A running loopback head."""

    address: str  # the Jobs API: http://127.0.0.1:PORT
    temp_dir: Path
    mark: str  # the value of PAGENT_RAY_HEAD in the environment of the head's processes
    slots: int  # agent_slot resources on the head
    started_in: float  # seconds from ray start to the first job's end


_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free on 127.0.0.1 just now (all held open while choosing)."""
    socks = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return [s.getsockname()[1] for s in socks]
    finally:
        for sock in socks:
            sock.close()


def head_processes(mark: str, temp_dir: Path) -> list[psutil.Process]:
    """Every living process of the head (see the module docstring)."""
    roots: dict[int, psutil.Process] = {}
    needle = str(temp_dir)
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            if (
                needle in " ".join(proc.info["cmdline"] or ())
                or proc.environ().get("PAGENT_RAY_HEAD") == mark
            ):
                roots[proc.pid] = proc
        except psutil.Error:
            continue
    found = dict(roots)
    for proc in roots.values():
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                found.setdefault(child.pid, child)
    return [p for p in found.values() if p.pid != os.getpid()]


def stop_head(mark: str, temp_dir: Path, grace: float = 2.0, bound: float = 30.0) -> list[str]:
    """SIGTERM every process of the head, SIGKILL after ``grace``; descriptions of survivors.

    Processes once found stay tracked (by pid and start time): when the raylet goes first, its
    renamed children are re-parented and could no longer be found by descent."""
    deadline = time.monotonic() + bound
    kill_at = time.monotonic() + grace
    tracked: dict[int, psutil.Process] = {}
    termed: set[int] = set()
    while True:
        for proc in head_processes(mark, temp_dir):
            tracked.setdefault(proc.pid, proc)
        tracked = {pid: p for pid, p in tracked.items() if _alive(p)}
        if not tracked:
            return []
        now = time.monotonic()
        if now > deadline:
            return [f"{p.pid} {' '.join(p.cmdline())[:120]}" for p in tracked.values()]
        for proc in tracked.values():
            with contextlib.suppress(psutil.Error):
                if now >= kill_at:
                    proc.kill()
                elif proc.pid not in termed:
                    proc.terminate()
                    termed.add(proc.pid)
        time.sleep(0.2)


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _answers(address: str) -> bool:
    try:
        with urllib.request.urlopen(f"{address}/api/version", timeout=2) as response:
            return bool(json.loads(response.read()).get("ray_version"))
    except (OSError, ValueError):
        return False


def _first_job(address: str, deadline: float) -> None:
    """Run one tiny job: the Jobs API answering is not yet the job agent being ready."""
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(address)
    sid = f"fixture-probe-{uuid.uuid4().hex[:8]}"
    client.submit_job(entrypoint="true", submission_id=sid)
    while client.get_job_status(sid) not in (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED):
        if time.monotonic() > deadline:
            raise TimeoutError("the Ray head's first job did not finish")
        time.sleep(0.1)
    client.delete_job(sid)


@contextlib.contextmanager
def _not_a_subreaper() -> Iterator[None]:
    """This process is no child subreaper meanwhile (and is again after, if it was).

    An in-process test of the local executor makes the pytest process a child subreaper
    (``supervisor.launch.orphans``: once per process, for good). ``ray start`` leaves its
    daemons behind when it exits; under a subreaper they become the pytest process's children
    instead of init's, and so does everything of theirs that is orphaned later: a job's
    entrypoint shell then stays a zombie that nobody reaps, its JobSupervisor waits for it until
    the job's stop wait runs out and keeps the job's ``agent_slot`` meanwhile (measured: the e2e
    tests then fail with lingering ``ray::JobSupervisor`` processes and jobs that never start).
    A head started by a person from a shell never has a subreaper above it."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    flag = ctypes.c_int(0)
    if libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(flag), 0, 0, 0) != 0 or not flag.value:
        yield
        return
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
    try:
        yield
    finally:
        libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


@pytest.fixture(scope="session", name="ray_head")
def ray_head_fixture() -> Iterator[RayHead]:
    """A Ray head on 127.0.0.1 for the whole session (see the module docstring)."""
    try:
        import ray.job_submission  # noqa: F401 - only whether it imports
    except ImportError as error:
        why = f"ray is not importable ({error}): pip install -e '.[test,ray]' for the Ray tests"
        if os.environ.get("PAGENT_REQUIRE_RAY") == "1":
            pytest.fail(f"PAGENT_REQUIRE_RAY=1 but {why}")
        pytest.skip(why)
    ray_cli = Path(sys.executable).parent / "ray"
    # Short: Ray puts unix sockets under it, and their paths must stay below 108 bytes.
    temp_dir = Path(tempfile.mkdtemp(prefix="pgray-", dir="/tmp"))
    mark = uuid.uuid4().hex
    ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
    env = {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # else several services listen on 0.0.0.0
        "PAGENT_RAY_HEAD": mark,
        # The nodes' cached workspaces (jobs inherit the head's environment): gone with the head.
        "PAGENT_NODE_CACHE": str(temp_dir / "node-cache"),
    }
    env.pop("RAY_ADDRESS", None)
    argv = [
        str(ray_cli),
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        "--dashboard-host=127.0.0.1",
        "--num-cpus=2",
        "--num-gpus=0",
        f"--resources={json.dumps({'agent_slot': SLOTS})}",
        "--include-dashboard=true",
        "--include-log-monitor=false",
        "--object-store-memory=78643200",
        "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
        *(f"{flag}={port}" for flag, port in ports.items()),
    ]
    address = f"http://127.0.0.1:{ports['--dashboard-port']}"
    started = time.monotonic()
    try:
        with _not_a_subreaper():
            done = subprocess.run(
                argv, env=env, capture_output=True, text=True, timeout=START_TIMEOUT, stdin=subprocess.DEVNULL
            )
        if done.returncode != 0:
            pytest.fail(f"ray start failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        deadline = started + START_TIMEOUT
        while not _answers(address):
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray Jobs API at {address} did not answer within {START_TIMEOUT:g} s")
            time.sleep(0.2)
        _first_job(address, deadline)
        yield RayHead(address, temp_dir, mark, SLOTS, round(time.monotonic() - started, 1))
    finally:
        survivors = stop_head(mark, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        if survivors:
            pytest.fail("processes of the Ray head survived its stop: " + "; ".join(survivors))
