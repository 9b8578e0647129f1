"""The benchmark suite runs end to end (so it cannot rot); its numbers are not checked here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # real processes (README, "Tests")

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = {"overhead", "worktrees", "streaming", "idle", "scale", "makespan", "storm", "parsing"}


def test_quick_benchmark_run_writes_every_section(tmp_path: Path) -> None:
    """``python -m benchmarks --quick`` completes and writes JSON with every section measured."""
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-install", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=110,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    data = json.loads((tmp_path / "latest.json").read_text())
    assert data["quick"] is True
    assert data["failed"] == {}
    assert set(data["sections"]) == SECTIONS
    for key, section in data["sections"].items():
        assert section["rows"], key
        assert section["targets"], key
        assert all(row["n"] >= 1 for row in section["rows"]), key
    assert {"date", "nproc", "cpu_model"} <= set(data["machine"])
    assert "Per-task overhead" in done.stdout
