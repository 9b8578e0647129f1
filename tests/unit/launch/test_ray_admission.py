"""Admission to a Ray cluster (``supervisor.launch.ray_admission``), from invented cluster usage:
when a run must wait (and what it says), when the plan's ``jobs`` holds a task instead, and the
submit that waits only briefly for a free slot."""

from __future__ import annotations

import pytest

from supervisor.launch import ray_admission
from supervisor.launch.ray_admission import Admission
from supervisor.launch.ray_jobs import Usage

SLOT = {"agent_slot": 1.0}


def usage(total: float, **held: float) -> Usage:
    return Usage(
        {"agent_slot": total, "CPU": 2.0}, {sid: {"agent_slot": amount} for sid, amount in held.items()}
    )


@pytest.fixture(autouse=True)
def _no_cluster(monkeypatch: pytest.MonkeyPatch) -> None:
    """The snapshot's refresh asks nobody: the tests' usage stays what they set."""
    monkeypatch.setattr(ray_admission, "SNAPSHOT_AGE", 3600.0)


def test_the_cluster_fits_the_plan_no_wait_is_said() -> None:
    admission = Admission(SLOT, jobs=2)
    admission.connected("http://head:8265", usage(2))
    assert [admission.problem() for _ in range(5)] == [None] * 5  # the third on: the gate's slots hold it


def test_jobs_beyond_the_clusters_room_wait_and_say_why() -> None:
    admission = Admission(SLOT, jobs=3)
    admission.connected("http://head:8265", usage(2))
    assert admission.problem() is None
    assert admission.problem() is None
    problem = admission.problem()
    assert problem == (
        "waiting for cluster capacity: no free agent_slot=1 on the Ray cluster at http://head:8265 "
        "(the cluster has room for 2 such jobs, this run holds 0)"
    )


def test_other_submitters_jobs_make_it_wait() -> None:
    admission = Admission(SLOT, jobs=2)
    admission.connected("http://head:8265", usage(2, someone=1.0))
    assert admission.problem() is None
    assert "other jobs hold it" in (admission.problem() or "")


def test_an_unused_admission_expires(monkeypatch: pytest.MonkeyPatch) -> None:
    admission = Admission(SLOT, jobs=3)
    admission.connected("http://head:8265", usage(1))
    assert admission.problem() is None
    assert admission.problem() is not None  # the first one's admission holds the only slot
    monkeypatch.setattr(ray_admission, "TOKEN_TTL", 0.0)
    assert admission.problem() is None  # its task never submitted: the slot is free again


def test_own_jobs_are_told_apart_from_everyone_elses() -> None:
    admission = Admission(SLOT, jobs=3)
    admission.connected("http://head:8265", usage(3, mine=1.0))
    admission._mine.add("mine")  # submitted by this supervisor, ended a moment ago
    assert admission.problem() is None
    assert admission.problem() is None
    assert admission.problem() is None  # its own ended job does not count as someone else's


@pytest.mark.anyio
async def test_take_waits_for_the_cluster_then_submits_once(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = [usage(1, other=1.0), usage(1, other=1.0), usage(1)]
    submitted: list[str] = []

    async def ask() -> Usage:
        return answers.pop(0)

    async def submit() -> str:
        submitted.append("sid-1")
        return "sid-1"

    admission = Admission(SLOT, jobs=2)
    admission.connected("http://head:8265", usage(1))
    monkeypatch.setattr(ray_admission, "POLL", 0.01)
    assert await admission.take(ask, submit) == "sid-1"
    assert submitted == ["sid-1"]
    assert not answers


@pytest.mark.anyio
async def test_take_gives_up_after_its_bound() -> None:
    async def ask() -> Usage:
        return usage(1, other=1.0)

    async def submit() -> str:
        raise AssertionError("nothing may be submitted into a full cluster")

    admission = Admission(SLOT, jobs=2, bound=0.05)
    admission.connected("http://head:8265", usage(1))
    with pytest.raises(OSError, match="no free agent_slot=1 on the Ray cluster"):
        await admission.take(ask, submit)
