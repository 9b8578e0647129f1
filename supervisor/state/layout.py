"""Every path under ``.pagent/``: the one place that knows where state, locks and run files live.

```
.pagent/
  .gitignore                        keeps all of it out of git
  state.db                          runs, task runs, attempts, heartbeats
  locks/<plan key>.lock             held by the active run
  .reserve                          disk space the active run holds back for its last records
  homes/<agent>/                    an agent CLI's own state with home = "own" (CODEX_HOME, XDG dirs)
  runs/<run id>/
    logs/<task>.<attempt>.log       raw stdout + stderr of one attempt (and its setup hooks)
    logs/<task>.teardown.log        the output of the task's teardown hooks (pagent clean)
    prompts/<task>.<attempt>.txt    the prompt the attempt got on stdin
    pull-requests/<branch>.md       the body of a pull request pagent opened ([publish])
    summary.json                    written at the end (also on SIGINT/SIGTERM)
    report.html                     the morning view
```
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from supervisor.errors import StateError
from supervisor.plan.model import PlanFile

_IGNORE = "# pagent-run state: runs, logs, locks. Never commit.\n*\n"


@dataclass(frozen=True)
class Layout:
    """The paths of one plan's state directory."""

    root: Path  # the plan's ``.pagent/``
    key: str  # the plan's key: names its lock

    @classmethod
    def of(cls, plan: PlanFile) -> Layout:
        """The layout of ``plan``'s state (beside the plan file)."""
        return cls(plan.state_dir, plan.key)

    @property
    def database(self) -> Path:
        return self.root / "state.db"

    @property
    def reserve(self) -> Path:
        """Space the active run holds back for its last records (``engine.logfile.DiskReserve``)."""
        return self.root / ".reserve"

    @property
    def lock_file(self) -> Path:
        return self.root / "locks" / f"{self.key}.lock"

    @property
    def agent_homes(self) -> Path:
        """Where agents with ``home = "own"`` keep their CLI's state, one directory each."""
        return self.root / "homes"

    def run_dir(self, run_id: str) -> Path:
        """The directory of one run's logs, prompts, summary and report."""
        return self.root / "runs" / run_id

    def log(self, run_id: str, task_id: str, attempt: int) -> Path:
        return _folder(self.root, run_id, "logs") / f"{task_id}.{attempt}.log"

    def teardown_log(self, run_id: str, task_id: str) -> Path:
        """Where ``pagent clean`` writes the output of a task's ``teardown`` hooks."""
        return self.run_dir(run_id) / "logs" / f"{task_id}.teardown.log"

    def prompt(self, run_id: str, task_id: str, attempt: int) -> Path:
        return _folder(self.root, run_id, "prompts") / f"{task_id}.{attempt}.txt"

    def pull_request_body(self, run_id: str, name: str) -> Path:
        """The body file of the pull request for ``name`` (a task id, or "integration")."""
        return self.run_dir(run_id) / "pull-requests" / f"{name}.md"

    def summary(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "summary.json"

    def report(self, run_id: str) -> Path:
        return self.run_dir(run_id) / "report.html"

    def ensure(self) -> None:
        """Create ``.pagent/`` with a ``.gitignore`` that keeps all of it out of git;
        ``StateError`` (one line) if it cannot be made (a read-only or full disk)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            ignore = self.root / ".gitignore"
            if not ignore.exists():
                ignore.write_text(_IGNORE)
        except OSError as exc:
            raise StateError(
                f"cannot write pagent's state beside the plan, in {self.root}: {exc.strerror or exc}"
            ) from None


@functools.lru_cache(maxsize=64)
def _folder(root: Path, run_id: str, name: str) -> Path:
    """``root/runs/RUN/name``, made once per run (each attempt asks for its log and prompt)."""
    return root / "runs" / run_id / name
