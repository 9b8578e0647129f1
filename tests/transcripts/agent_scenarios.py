"""The recorded scenarios of the Codex, Gemini and opencode CLIs (see ``record_agents.py``).

Each `Scenario` names the CLI, the script its scripted server follows, the options of the CLI's
``*_launch`` function in ``tests/agent_envs.py`` (retry and idle bounds, sandbox, approval
mode, permissions) and a hard time bound for the run.  Scenarios whose name ends in
``-default`` leave the CLI's own retry/idle defaults, to measure how long they take.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from tests.fake_http import ErrorReply, SilentReply, StallReply, TextReply, ToolCallReply
from tests.fake_openai import structured_output

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from tests.fake_http import Reply

PROMPT = "Create hello.txt saying hello, then say what you did."
DONE = TextReply("I created hello.txt.")
# A result schema as pagent's README writes one (Codex passes it on unchanged, ``strict: true``).
RESULT_SCHEMA = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["done", "nothing_to_do", "needs_input", "failed"]},
        "question": {"type": "string"},
        "summary": {"type": "string"},
    },
    "required": ["status"],
}
MISSING_THREAD = "00000000-0000-4000-8000-000000000000"


@dataclass(frozen=True)
class Scenario:
    """One recorded run of one CLI."""

    cli: str
    name: str
    description: str
    script: Sequence[Reply]
    when_exhausted: Reply | None = None  # None: the server's "script exhausted" 400
    options: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float = 60.0
    git_repo: bool = True  # the working directory is a git repository
    drop_env: tuple[str, ...] = ()  # variables removed from the launch environment
    schema: Mapping[str, Any] | None = None  # Codex: given as --output-schema FILE
    # Codex: a first run against a server of its own with this script; the recorded run resumes
    # its thread (``resume THREAD``).
    earlier: Sequence[Reply] = ()


def _codex() -> list[Scenario]:
    write = ToolCallReply("exec_command", {"cmd": "printf 'hello\\n' > hello.txt"})
    patch = ToolCallReply("apply_patch", "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n")
    defaults = {"request_max_retries": None, "stream_max_retries": None}
    return [
        Scenario(
            "codex",
            "success-exec-command",
            "exec_command writes the file (-s workspace-write).",
            [write, DONE],
        ),
        Scenario(
            "codex", "success-apply-patch", "apply_patch adds the file (-s workspace-write).", [patch, DONE]
        ),
        Scenario(
            "codex",
            "command-failed",
            "A command that exits 2, then a final message: command_execution failed, turn completed.",
            [ToolCallReply("exec_command", {"cmd": "echo hi; ls /nonexistent"}), TextReply("It failed.")],
        ),
        Scenario(
            "codex",
            "readonly-exec-denied",
            "Default (read-only) sandbox, exec_command writes: denied, no item at all, exit 0.",
            [write, DONE],
            options={"sandbox": None},
        ),
        Scenario(
            "codex",
            "readonly-exec-denied-slow",
            "As readonly-exec-denied, but the command sleeps 0.5 s first: now a failed item shows.",
            [ToolCallReply("exec_command", {"cmd": "sleep 0.5; printf 'hello\\n' > hello.txt"}), DONE],
            options={"sandbox": None},
        ),
        Scenario(
            "codex",
            "readonly-patch-rejected",
            "Default (read-only) sandbox, apply_patch: rejected (stderr only), exit 0.",
            [patch, DONE],
            options={"sandbox": None},
        ),
        Scenario(
            "codex",
            "outside-workspace-denied",
            "-s workspace-write, a command writes to $HOME (outside the workspace).",
            [ToolCallReply("exec_command", {"cmd": 'printf x > "$HOME/outside.txt"'}), DONE],
        ),
        Scenario(
            "codex",
            "model-metadata-warning",
            "A model name Codex does not know: an error item that is not a failure, then success.",
            [write, DONE],
            options={"model": "fake-model"},
        ),
        Scenario(
            "codex", "http-500", "Every request 500; request/stream retries 0.", [], ErrorReply(500, "boom")
        ),
        Scenario(
            "codex",
            "http-500-default",
            "Every request 500; Codex's default retries.",
            [],
            ErrorReply(500, "boom"),
            options=defaults,
        ),
        Scenario("codex", "http-400", "Every request 400; retries 0.", [], ErrorReply(400, "bad request")),
        Scenario(
            "codex", "rate-limit-429", "Every request 429; retries 0.", [], ErrorReply(429, "slow down")
        ),
        Scenario(
            "codex",
            "rate-limit-429-default",
            "Every request 429 with retry-after: 1; default retries.",
            [],
            ErrorReply(429, "slow down", {"retry-after": "1"}),
            options=defaults,
        ),
        Scenario(
            "codex",
            "quota-429",
            "429 with code insufficient_quota; retries 0.",
            [],
            ErrorReply(429, "You exceeded your current quota", code="insufficient_quota"),
        ),
        Scenario("codex", "auth-401", "Every request 401; retries 0.", [], ErrorReply(401, "bad key")),
        Scenario(
            "codex",
            "auth-401-default",
            "Every request 401; default retries.",
            [],
            ErrorReply(401, "bad key"),
            options=defaults,
        ),
        Scenario(
            "codex",
            "stall-idle-timeout",
            "Headers and response.created, then silence; stream_idle_timeout_ms=3000, retries 0.",
            [],
            StallReply(),
            options={"stream_idle_timeout_ms": 3000},
        ),
        Scenario(
            "codex",
            "stall-default",
            "Headers and response.created, then silence; Codex defaults (killed after 45 s).",
            [],
            StallReply(),
            options=defaults,
            timeout_s=45,
        ),
        Scenario(
            "codex",
            "silent-idle-timeout",
            "Never any headers; stream_idle_timeout_ms=3000, retries 0 (killed after 45 s).",
            [],
            SilentReply(),
            options={"stream_idle_timeout_ms": 3000},
            timeout_s=45,
        ),
        Scenario(
            "codex",
            "not-a-git-repo",
            "Working directory outside any git repository, no --skip-git-repo-check.",
            [write, DONE],
            git_repo=False,
        ),
        *_codex_headless(write),
    ]


def _codex_headless(write: ToolCallReply) -> list[Scenario]:
    """Codex's structured results (``--output-schema``) and resumed threads."""
    asks = structured_output(status="needs_input", question="SQLite or PostgreSQL?")
    return [
        Scenario(
            "codex",
            "structured-needs-input",
            "--output-schema: the final agent_message is the JSON the schema asked for.",
            [asks],
            schema=RESULT_SCHEMA,
        ),
        Scenario(
            "codex",
            "structured-after-tool",
            "--output-schema: a command, then the final answer in the schema.",
            [write, structured_output(status="done", summary="created hello.txt")],
            schema=RESULT_SCHEMA,
        ),
        Scenario(
            "codex",
            "structured-prose",
            "--output-schema, but the model answers in prose: no structured result.",
            [TextReply("I would rather talk.")],
            schema=RESULT_SCHEMA,
        ),
        Scenario(
            "codex",
            "resume-thread",
            "A first run asks a question (--output-schema); `exec resume THREAD` continues it: the "
            "server gets the earlier turns, the thread keeps its id, usage is the thread's total.",
            [write, structured_output(status="done", summary="created hello.txt")],
            schema=RESULT_SCHEMA,
            earlier=[asks],
        ),
        Scenario(
            "codex",
            "resume-missing-thread",
            "`exec resume` of a thread Codex never saw: exit 1, no event, the reason on stderr.",
            [],
            options={"extra_args": ("resume", MISSING_THREAD)},
        ),
    ]


def _gemini() -> list[Scenario]:
    write = ToolCallReply("write_file", {"file_path": "hello.txt", "content": "hello\n"})
    defaults = {"max_attempts": None}
    return [
        Scenario(
            "gemini", "success-write-file", "write_file under --yolo, then a final text.", [write, DONE]
        ),
        Scenario(
            "gemini",
            "success-auto-edit",
            "write_file under --approval-mode auto_edit.",
            [write, DONE],
            options={"approval": ("--approval-mode", "auto_edit")},
        ),
        Scenario(
            "gemini",
            "tool-not-registered",
            "No --yolo: write_file is not registered; tool_result error, result success, exit 0.",
            [write, DONE],
            options={"approval": ()},
        ),
        Scenario("gemini", "http-500", "Every request 500; maxAttempts 1.", [], ErrorReply(500, "boom")),
        Scenario(
            "gemini",
            "http-500-default",
            "Every request 500; default maxAttempts (10).",
            [],
            ErrorReply(500, "boom"),
            options=defaults,
            timeout_s=400,
        ),
        Scenario(
            "gemini",
            "rate-limit-429",
            "Every request 429; maxAttempts 1.",
            [],
            ErrorReply(429, "Resource exhausted"),
        ),
        Scenario(
            "gemini",
            "rate-limit-429-default",
            "Every request 429; default maxAttempts.",
            [],
            ErrorReply(429, "Resource exhausted"),
            options=defaults,
            timeout_s=400,
        ),
        Scenario(
            "gemini",
            "auth-401",
            "Every request 401; maxAttempts 1.",
            [],
            ErrorReply(401, "API key not valid"),
        ),
        Scenario(
            "gemini",
            "auth-401-default",
            "Every request 401; default maxAttempts.",
            [],
            ErrorReply(401, "API key not valid"),
            options=defaults,
            timeout_s=400,
        ),
        Scenario(
            "gemini",
            "stall-headers",
            "Headers, then silence; maxAttempts 1 (undici's 300 s body timeout; killed after 400 s).",
            [],
            StallReply(),
            timeout_s=400,
        ),
        Scenario(
            "gemini",
            "silent-never-headers",
            "Never any headers; maxAttempts 1 (undici's 60 s headers timeout).",
            [],
            SilentReply(),
            timeout_s=200,
        ),
        Scenario(
            "gemini",
            "untrusted-workspace",
            "Without --skip-trust: the CLI refuses the untrusted folder.",
            [write, DONE],
            options={"trust": False},
        ),
        Scenario(
            "gemini",
            "auth-no-key",
            "No GEMINI_API_KEY in the environment.",
            [write, DONE],
            options={"api_key": None},
        ),
    ]


def _opencode() -> list[Scenario]:
    write = ToolCallReply("write", {"filePath": "hello.txt", "content": "hello\n"})
    return [
        Scenario("opencode", "success-write", "write tool, then a final text (edit: allow).", [write, DONE]),
        Scenario(
            "opencode",
            "permission-ask-rejected",
            'permission edit "ask": auto-rejected in run mode, exit 0.',
            [write, DONE],
            options={"permission": {"edit": "ask", "bash": "ask"}},
        ),
        Scenario(
            "opencode",
            "permission-deny",
            'permission edit "deny".',
            [write, DONE],
            options={"permission": {"edit": "deny", "bash": "deny"}},
        ),
        Scenario(
            "opencode",
            "http-500",
            "Every request 500: opencode's built-in 5 retries.",
            [],
            ErrorReply(500, "boom"),
            timeout_s=200,
        ),
        Scenario(
            "opencode", "http-400", "Every request 400 (not retried).", [], ErrorReply(400, "bad request")
        ),
        Scenario(
            "opencode",
            "rate-limit-429",
            "Every request 429: retried like a 5xx.",
            [],
            ErrorReply(429, "slow down"),
            timeout_s=200,
        ),
        Scenario("opencode", "auth-401", "Every request 401.", [], ErrorReply(401, "bad key")),
        Scenario(
            "opencode",
            "stall-chunk-timeout",
            "Headers and a first chunk, then silence; chunkTimeout 3000 ms.",
            [],
            StallReply(),
            options={"chunk_timeout_ms": 3000},
            timeout_s=200,
        ),
        Scenario(
            "opencode",
            "silent-header-timeout",
            "Never any headers; headerTimeout 3000 ms.",
            [],
            SilentReply(),
            options={"header_timeout_ms": 3000},
            timeout_s=200,
        ),
        Scenario(
            "opencode",
            "stall-default",
            "Headers and a first chunk, then silence; defaults (killed after 60 s).",
            [],
            StallReply(),
            timeout_s=60,
        ),
    ]


def scenarios() -> list[Scenario]:
    """Every scenario, Codex first."""
    return [*_codex(), *_gemini(), *_opencode()]
