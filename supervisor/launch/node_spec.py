"""The contract between the supervisor and the node program: the spec in, the records out.

The supervisor describes one attempt as a ``NodeSpec`` and passes it to ``ray_node`` on the
node's command line (``encode_spec``: zlib-compressed JSON in base64url, split into arguments
below Linux's 128 KiB limit per argument) or as a path to a JSON file. Ray runs a job's
entrypoint through a shell (``sh -c``: the whole command one argument, so at most 128 KiB), so a
spec too large for that (a prompt of some hundred KB) travels through git instead: a blob the
supervisor pushed to the remote, named on the command line as ``--git URL REF SHA``. The node program answers
with *records* in its output, between the agent's own bytes:

    PAGENT-START[<nonce>] {"node": ..., "pid": ..., "t": ...}\\n             (first, before git)
    PAGENT-SAMPLE[<nonce>] {"t": ..., "cpu": ..., "rss": ..., "procs": ...}\\n (from the agent's start)
    PAGENT-ERR[<nonce>] {"b": "<base64>"}\\n                                 (the agent's stderr)
    PAGENT-EXIT[<nonce>] {"exit_code": ..., "signal": ..., "stopped": ..., "leftovers": ...}\\n
    PAGENT-RESULT[<nonce>] {...}\\n                                          (last)

``nonce`` is random per attempt and carried in the spec, so an agent that prints something
that looks like a record (or a nested pagent run) is never mistaken for the node program. The
agent's stdout goes straight into the same file, so a record can land in the middle of an
agent's line; ``RecordSplitter`` removes records exactly, giving back the agent's bytes
unchanged. Its stderr comes through a pipe in ERR records (Ray gives a job one log, and some
agent kinds read stderr apart from stdout). EXIT says how the agent ended, once its tree is
gone; RESULT follows after the after-attempt steps (auto-commit, push).

A spec's ``mode`` says what the job does: ``attempt`` (the task's workspace, the agent, the
after-attempt steps), ``verify`` (the task's ``verify`` command in the workspace an attempt left
on this node, at ``start_commit``: no commit, no push) or ``scratch`` (a command in a fresh
directory of its own, with no git at all: an agent's ``--version`` and the preflight prompt). Ray
writes lines of its own into the job log before the entrypoint starts ("Running entrypoint for
job ...", with the whole command line); with ``preamble=True`` the splitter drops everything
before the START record.

Standard library only: this module runs on the nodes.
"""

from __future__ import annotations

import base64
import json
import re
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

SPEC_VERSION = 1
_ARG_CHUNK = 100_000  # below MAX_ARG_STRLEN (131072 bytes) for one argv string
KINDS = ("START", "SAMPLE", "ERR", "EXIT", "RESULT")
MODES = ("attempt", "verify", "scratch")
_PREFIX = b"PAGENT-"
_RECORD = re.compile(rb"PAGENT-(START|SAMPLE|ERR|EXIT|RESULT)\[([0-9a-f]{8,64})\] ")


class SpecError(ValueError):
    """The spec given to the node program is unreadable or invalid."""


@dataclass(frozen=True)
class NodeSpec:
    """One attempt, as the node program needs it. Durations are seconds."""

    plan_uid: str
    run_id: str
    task_id: str
    attempt: int
    remote: str  # a git URL (or path) that both the supervisor and the node can reach
    branch: str  # the task branch; continued if the remote has it, else created at start_commit
    start_commit: str
    argv: tuple[str, ...]
    prompt: str
    nonce: str
    start_ref: str | None = None  # a remote ref that holds start_commit (fetched instead of the sha)
    force_push: bool = False  # the branch is pagent's own: a rewritten history may replace it
    workdir: str | None = None  # the agent's cwd, relative to the workspace
    env: Mapping[str, str] = field(default_factory=dict)  # overlay on the node's environment
    wave: str = ""
    kill_grace: float = 10.0
    done_marker: str | None = None
    auto_commit: bool = True
    verify_timeout: float = 3600.0  # the bound of mode verify (``argv`` is the verify command)
    git_timeout: float = 300.0  # each network git call (fetch, push); local calls get 60 s
    stop_budget: float = 60.0  # after a stop: time left for auto-commit and push
    sample_interval: float = 10.0  # 0: no PAGENT-SAMPLE records
    cache_dir: str | None = None  # default: $PAGENT_NODE_CACHE, else ~/.cache/pagent-node
    not_after: float | None = None  # epoch seconds: a job that starts later runs nothing (see ray_jobs)
    mode: str = "attempt"  # one of MODES (see the module docstring)
    # The commit the remote's branch must be at when the attempt starts (where the supervisor
    # put it): anything else there is someone else's push, and the attempt refuses to start.
    expect_remote: str | None = None
    # Files for the attempt's own directory ({attempt_dir} in env values): name -> base64.
    files: Mapping[str, str] = field(default_factory=dict)
    home: str | None = None  # the agent's kept directory ({agent_home}) under the node cache

    @property
    def pin_ref(self) -> str:
        """The ref that keeps this attempt's final commit reachable, whatever the branch does."""
        return f"refs/pagent/{self.run_id}/{self.task_id}/{self.attempt}"

    @property
    def cookie(self) -> str:
        """The same ``PAGENT_COOKIE`` value a local attempt would carry."""
        return f"{self.plan_uid}:{self.run_id}:{self.task_id}:{self.attempt}"

    def to_json(self) -> str:
        """The spec as one JSON object (with ``version``)."""
        data = asdict(self)
        data["env"] = dict(self.env)
        data["files"] = dict(self.files)
        return json.dumps({"version": SPEC_VERSION, **data}, separators=(",", ":"))


_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "plan_uid": str,
    "run_id": str,
    "task_id": str,
    "attempt": int,
    "remote": str,
    "branch": str,
    "start_commit": str,
    "argv": list,
    "prompt": str,
    "nonce": str,
}
_OPTIONAL: dict[str, type | tuple[type, ...]] = {
    "start_ref": (str, type(None)),
    "force_push": bool,
    "workdir": (str, type(None)),
    "env": dict,
    "wave": str,
    "kill_grace": (int, float),
    "done_marker": (str, type(None)),
    "auto_commit": bool,
    "verify_timeout": (int, float),
    "git_timeout": (int, float),
    "stop_budget": (int, float),
    "sample_interval": (int, float),
    "cache_dir": (str, type(None)),
    "not_after": (int, float, type(None)),
    "mode": str,
    "expect_remote": (str, type(None)),
    "files": dict,
    "home": (str, type(None)),
}
_SAFE_PART = re.compile(r"[A-Za-z0-9._-]+")


def spec_from_dict(data: Mapping[str, Any]) -> NodeSpec:
    """Check ``data`` field by field and build the spec; ``SpecError`` names the first bad field."""
    if data.get("version") != SPEC_VERSION:
        raise SpecError(f"version: expected {SPEC_VERSION}, got {data.get('version')!r}")
    unknown = sorted(set(data) - set(_REQUIRED) - set(_OPTIONAL) - {"version"})
    if unknown:
        raise SpecError(f"{unknown[0]}: unknown field")
    for name, kind in {**_REQUIRED, **_OPTIONAL}.items():
        if name not in data:
            if name in _REQUIRED:
                raise SpecError(f"{name}: missing")
            continue
        value = data[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:  # bool is an int to isinstance
            raise SpecError(f"{name}: expected {_kind_name(kind)}, got {value!r}")
        if not isinstance(value, kind):
            raise SpecError(f"{name}: expected {_kind_name(kind)}, got {value!r}")
    for name in ("plan_uid", "run_id", "task_id"):
        if not _SAFE_PART.fullmatch(data[name]) or data[name].startswith("."):
            raise SpecError(f"{name}: expected letters, digits, '.', '_', '-', got {data[name]!r}")
    if not re.fullmatch(r"[0-9a-f]{8,64}", data["nonce"]):
        raise SpecError(f"nonce: expected 8 to 64 lowercase hex digits, got {data['nonce']!r}")
    if not data["argv"] or not all(isinstance(a, str) for a in data["argv"]):
        raise SpecError(f"argv: expected a non-empty list of strings, got {data['argv']!r}")
    env = data.get("env", {})
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
        raise SpecError("env: expected a table of strings")
    workdir = data.get("workdir")
    if workdir is not None and (Path(workdir).is_absolute() or ".." in Path(workdir).parts):
        raise SpecError(f"workdir: expected a path inside the workspace, got {workdir!r}")
    if data["attempt"] < 1:
        raise SpecError(f"attempt: expected an integer >= 1, got {data['attempt']!r}")
    mode = data.get("mode", "attempt")
    if mode not in MODES:
        raise SpecError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    if mode != "scratch" and not (data["remote"] and data["branch"] and data["start_commit"]):
        raise SpecError(f"remote, branch, start_commit: needed in mode {mode!r}")
    files = data.get("files", {})
    if not all(isinstance(v, str) and not _bad_file(k) for k, v in files.items()):
        raise SpecError("files: expected relative paths inside the attempt's directory, base64 strings")
    home = data.get("home")
    if home is not None and (not _SAFE_PART.fullmatch(home) or home in (".", "..")):
        raise SpecError(f"home: expected a plain name, got {home!r}")
    values = {k: v for k, v in data.items() if k != "version"}
    values["argv"] = tuple(data["argv"])
    values["env"] = dict(env)
    values["files"] = dict(files)
    return NodeSpec(**values)


def _bad_file(name: object) -> bool:
    """Whether ``name`` cannot name a file inside the attempt's directory."""
    if not isinstance(name, str) or not name or name.startswith(("/", "~")):
        return True
    return ".." in Path(name).parts


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false", list: "a list"}
    names.update({dict: "a table", type(None): "null"})
    return " or ".join(dict.fromkeys(names[k] for k in kinds if not (k is int and float in kinds)))


def encode_spec(spec: NodeSpec) -> list[str]:
    """The spec as command-line arguments: base64url of zlib-compressed JSON, in chunks."""
    text = base64.urlsafe_b64encode(zlib.compress(spec.to_json().encode(), 9)).decode()
    return [text[i : i + _ARG_CHUNK] for i in range(0, len(text), _ARG_CHUNK)] or [""]


def decode_spec(args: Sequence[str]) -> NodeSpec:
    """Read a spec from ``args``: one path to a JSON file, or ``encode_spec``'s chunks (also
    plain base64 of uncompressed JSON). ``SpecError`` with one line when it cannot."""
    if not args:
        raise SpecError("expected the spec: a path to a JSON file, or its base64 encoding")
    if len(args) == 1 and (args[0].startswith(("/", ".")) or args[0].endswith(".json")):
        try:
            raw = Path(args[0]).read_bytes()
        except OSError as error:
            raise SpecError(f"cannot read {args[0]}: {error.strerror}") from None
    else:
        text = "".join(args).strip()
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            try:
                raw = base64.b64decode(text, validate=True)
            except ValueError:
                raise SpecError("not a path and not valid base64") from None
        if raw[:1] == b"x":  # zlib's header byte for the default window size
            try:
                raw = zlib.decompress(raw)
            except zlib.error as error:
                raise SpecError(f"invalid compressed spec: {error}") from None
    return spec_from_json(raw)


def spec_from_json(raw: bytes) -> NodeSpec:
    """The spec in ``raw`` (``NodeSpec.to_json``'s bytes); ``SpecError`` with one line if bad."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise SpecError(f"invalid JSON: {error}") from None
    if not isinstance(data, dict):
        raise SpecError("expected a JSON object")
    return spec_from_dict(data)


def record(kind: str, nonce: str, payload: Mapping[str, Any]) -> bytes:
    """One record line (see the module docstring)."""
    assert kind in KINDS
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
    return f"PAGENT-{kind}[{nonce}] {body}\n".encode()


class RecordSplitter:
    """Separates the node program's records from the agent's bytes in a stream of chunks.

    ``feed`` returns the agent's bytes that are certain (a possible record prefix at the end
    of a chunk is held back until the next chunk decides it) and the complete records seen.
    """

    PREAMBLE_KEPT = 1 << 16  # bytes of a dropped preamble kept to explain a failed start

    def __init__(self, nonce: str, preamble: bool = False) -> None:
        self._nonce = nonce.encode()
        self._held = b""
        self._in_preamble = preamble
        self.preamble = b""  # the start of what came before START (Ray's lines, a start failure)

    def feed(self, chunk: bytes) -> tuple[bytes, list[tuple[str, dict[str, Any]]]]:
        """Split ``chunk`` (appended to what was held back) into agent bytes and records."""
        data = self._held + chunk
        self._held = b""
        out: list[bytes] = []
        records: list[tuple[str, dict[str, Any]]] = []
        pos = search = 0
        while (start := data.find(b"PAGENT-", search)) >= 0:
            search = start + 1
            match = _RECORD.match(data, start)
            if match is None:
                if _could_become_record(data[start:]):
                    break
                continue
            if match.group(2) != self._nonce:
                continue
            end = data.find(b"\n", match.end())
            if end < 0:
                break
            out.append(data[pos:start])
            try:
                payload = json.loads(data[match.end() : end])
            except ValueError:
                payload = None
            if isinstance(payload, dict):
                records.append((match.group(1).decode(), payload))
            if self._in_preamble and match.group(1) == b"START":
                self._in_preamble = False
                self._keep_preamble(b"".join(out))
                out = []
            pos = search = end + 1
        else:
            # No record begins in the rest; its last bytes may still begin one ("PAGE").
            start = len(data)
            for size in range(min(len(_PREFIX) - 1, len(data) - pos), 0, -1):
                if data.endswith(_PREFIX[:size]):
                    start = len(data) - size
                    break
        out.append(data[pos:start])
        self._held = data[start:]
        if self._in_preamble:
            self._keep_preamble(b"".join(out))
            return b"", records
        return b"".join(out), records

    def _keep_preamble(self, data: bytes) -> None:
        room = self.PREAMBLE_KEPT - len(self.preamble)
        if room > 0:
            self.preamble += data[:room]

    def flush(self) -> bytes:
        """The bytes still held back: at the end of the stream they belong to the agent. A
        stream that never reached its START record gives its preamble instead (why it failed)."""
        held, self._held = self._held, b""
        if self._in_preamble:
            self._keep_preamble(held)
            return self.preamble
        return held


def _could_become_record(tail: bytes) -> bool:
    """Whether ``tail`` (the rest of the data from a ``P``) is a record cut short by the chunk end."""
    if len(tail) > 7 + 6 + 1 + 64 + 2:
        return False
    for kind in KINDS:
        prefix = f"PAGENT-{kind}[".encode()
        if prefix.startswith(tail):
            return True
        if tail.startswith(prefix):
            rest = tail[len(prefix) :]
            return re.fullmatch(rb"[0-9a-f]{0,64}(\]?)", rest) is not None
    return False
