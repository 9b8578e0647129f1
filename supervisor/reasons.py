"""The one vocabulary of reasons: why an attempt ended, why a task did not run or failed.

``Reason`` is string-valued, so the store, ``summary.json`` and ``pagent status --json`` keep
the very strings they always had. A few reasons carry a detail after their class: ``exit 3``,
``signal SIGKILL``, ``api-error 500``, ``dependency fix-1 failed``, ``worktree: <git's words>``,
``io-error: <what failed>``;
``Reason.of`` finds the class of any reason string, so the policy table, the checks, the views
and the report all speak of classes, never of spellings.
"""

from __future__ import annotations

import enum
import errno


class Reason(enum.StrEnum):
    """A class of reasons; the value is the reason string (or its first word, for those with a
    detail)."""

    # How an attempt's process ended.
    OK = "ok"
    EXIT = "exit"  # "exit 3"
    SIGNAL = "signal"  # "signal SIGKILL"
    TIMEOUT = "timeout"
    STALLED = "stalled"
    INTERRUPTED = "interrupted"
    OOM_KILLED = "oom-killed"
    LAUNCH_FAILED = "launch-failed"
    # What an agent kind recognised in the agent's own output.
    RATE_LIMITED = "rate-limited"
    USAGE_LIMIT = "usage-limit"
    AUTH = "auth"
    BILLING = "billing"
    MAX_TURNS = "max-turns"
    BUDGET = "budget"
    NEEDS_INPUT = "needs-input"
    API_TIMEOUT = "api-timeout"
    API_ERROR = "api-error"  # "api-error 500"
    CLAUDE_ERROR = "claude-error"
    AGENT_ERROR = "agent-error"  # another kind's error without a more precise class
    NO_RESULT = "no-result"
    TOOL_FAILED = "tool-failed"
    # The checks after an attempt.
    VERIFY = "verify"
    NO_CHANGES = "no-changes"
    OUTSIDE_WORKDIR = "outside-workdir"
    NO_DONE_MARKER = "no-done-marker"
    SETUP = "setup"  # "setup: `make deps` exit 2": a setup or before_attempt hook failed
    MCP_FAILED = "mcp-failed"  # "mcp-failed: db (failed)": with mcp = "required"
    # What the agent's structured result (``result_schema``) says, or why it cannot be used.
    RESULT_INVALID = "result-invalid"  # "result-invalid: 'status' is a required property"
    AGENT_FAILED = "agent-failed"  # "agent-failed: <the result's reason>": status "failed"
    # What the task's branch shows after an attempt.
    NOT_ON_BRANCH = "not-on-branch"  # the work is not on the task's branch (deleted, detached...)
    HISTORY_REWRITTEN = "history-rewritten"  # the branch no longer descends from its start
    # Why a task did not run (or stopped) without an attempt failing.
    MAX_COST = "max-cost"
    DEPENDENCY = "dependency"  # "dependency fix-1 failed"
    EARLIER_WAVE = "an earlier wave failed"  # "an earlier wave failed (fix-1, fix-2)"
    WORKSPACE = "worktree"  # "worktree: <git's words>"
    CONFLICT = "conflict"  # merged into the integration branch with conflicts
    # What the supervisor's own machine did to a task (never the agent's verdict).
    DISK_FULL = "disk-full"  # no space left writing the attempt's log, prompt or records
    IO_ERROR = "io-error"  # "io-error: cannot write ...: Not a directory"
    SUPERVISOR_ERROR = "supervisor-error"  # "supervisor-error: KeyError: 'x'": a bug of pagent's

    @classmethod
    def of(cls, reason: str | None) -> Reason | None:
        """The class of a reason string ("exit 3" -> ``EXIT``); ``None`` for ``None`` or a string
        that names no class."""
        if reason is None:
            return None
        try:
            return cls(reason)
        except ValueError:
            pass
        for member in _WITH_DETAIL:
            if reason.startswith(member.value) and reason[len(member.value) : len(member.value) + 1] in " :":
                return member
        return None

    def detail(self, detail: object) -> str:
        """This class with a detail: ``Reason.EXIT.detail(3) == "exit 3"``,
        ``Reason.WORKSPACE.detail("...") == "worktree: ..."``."""
        if self in _COLON:
            return f"{self.value}: {detail}"
        if self is Reason.EARLIER_WAVE:
            return f"{self.value} ({detail})"
        return f"{self.value} {detail}"


_COLON = frozenset(
    {
        Reason.WORKSPACE,
        Reason.IO_ERROR,
        Reason.SUPERVISOR_ERROR,
        Reason.SETUP,
        Reason.MCP_FAILED,
        Reason.RESULT_INVALID,
        Reason.AGENT_FAILED,
    }
)
_WITH_DETAIL = (
    Reason.SETUP,
    Reason.MCP_FAILED,
    Reason.RESULT_INVALID,
    Reason.AGENT_FAILED,
    Reason.EXIT,
    Reason.SIGNAL,
    Reason.API_ERROR,
    Reason.DEPENDENCY,
    Reason.EARLIER_WAVE,
    Reason.WORKSPACE,
    Reason.IO_ERROR,
    Reason.SUPERVISOR_ERROR,
)


def exit_reason(code: int) -> str:
    """The reason for an attempt whose process exited with ``code``."""
    return Reason.OK.value if code == 0 else Reason.EXIT.detail(code)


def signal_reason(name: str) -> str:
    """The reason for an attempt whose process was killed by signal ``name``."""
    return Reason.SIGNAL.detail(name)


def api_error(status: int) -> str:
    """The reason for an API failure with HTTP status ``status``."""
    return Reason.API_ERROR.detail(status)


_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``: itself, or every leaf of a (nested) exception group."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in leaves(inner)]
    return [exc]


def mishap(exc: BaseException) -> str:
    """The reason for a task the supervisor itself could not carry on with: ``disk-full`` for a
    full disk, ``io-error: ...`` for another file error (or a state error, which carries
    ``disk_full``), ``supervisor-error: Type: message`` for anything else (a bug of pagent's)."""
    exc = leaves(exc)[0]
    text = " ".join(str(exc).split())[:300]
    if (isinstance(exc, OSError) and exc.errno in _FULL) or getattr(exc, "disk_full", False):
        return Reason.DISK_FULL.value
    if isinstance(exc, OSError) or hasattr(exc, "disk_full"):
        return Reason.IO_ERROR.detail(text or type(exc).__name__)
    return Reason.SUPERVISOR_ERROR.detail(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
