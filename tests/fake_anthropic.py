"""A scripted Anthropic Messages API on 127.0.0.1, for driving the real Claude Code CLI offline.

`FakeAnthropic` answers each *scripted* ``POST /v1/messages`` with the next `Reply` of its
script, in order, and records every request it receives.  The CLI streams its main-loop
requests, so replies are sent as server-sent events in the order the Messages API uses:
``message_start``, ``content_block_start``/``_delta``/``_stop`` per block, ``message_delta``
(stop reason and output tokens), ``message_stop``.

Which requests consume the script (see `is_scripted_request`): a ``POST /v1/messages`` is
scripted unless it is the CLI's quota probe (``max_tokens`` of 1) or a helper call on a
"haiku" model that offers no tools (title or summary generation).  Neither was observed with
2.1.328 in ``-p`` mode with ``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1``, but both exist in
the CLI and must not shift the script when they appear.  Those helper calls, token counting,
and anything else (the CLI sends ``HEAD /api/hello`` when non-essential traffic is allowed)
get a harmless answer and are only logged.

Stdlib only: the test suite must run without extra packages.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

JsonObject = dict[str, Any]

# Anthropic's error `type` for each status the API documents.
_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}


@dataclass(frozen=True)
class TextReply:
    """A final assistant text; ends the turn (``stop_reason: end_turn``).

    Non-zero token counts make the CLI compute a non-zero ``total_cost_usd``.
    """

    text: str
    input_tokens: int = 100
    output_tokens: int = 20


@dataclass(frozen=True)
class ToolUseReply:
    """An assistant call of tool `name` with `input` (``stop_reason: tool_use``).

    The CLI runs the tool (subject to its permission mode) and sends the ``tool_result`` in
    its next request.  `tool_use_id` defaults to a fresh ``toolu_fake_…`` id.
    """

    name: str
    input: Mapping[str, object]
    tool_use_id: str | None = None
    input_tokens: int = 100
    output_tokens: int = 20


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error `status` with an Anthropic-style JSON error body.

    `error_type` defaults to the API's type for the status (``api_error`` when unknown).
    `headers` are added verbatim, e.g. ``retry-after`` or the ``anthropic-ratelimit-unified-*``
    headers of a subscription usage limit.
    """

    status: int
    message: str = "scripted error"
    error_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SilentReply:
    """Read the request, then send nothing at all until the server closes: a dead connection."""


Reply = TextReply | ToolUseReply | ErrorReply | SilentReply


def write_file(file_path: str, content: str) -> ToolUseReply:
    """Return a reply that makes the CLI's ``Write`` tool create `file_path` with `content`."""
    return ToolUseReply("Write", {"file_path": file_path, "content": content})


def run_bash(command: str, description: str = "scripted command") -> ToolUseReply:
    """Return a reply that asks the CLI's ``Bash`` tool to run `command`."""
    return ToolUseReply("Bash", {"command": command, "description": description})


def usage_limit_reply(reset_epoch: int, claim: str = "five_hour") -> ErrorReply:
    """Return a 429 shaped like a subscription usage limit ("You've hit your limit").

    The CLI reads the ``anthropic-ratelimit-unified-*`` headers to tell a plan limit from an
    ordinary rate limit; `reset_epoch` is when the limit resets (Unix seconds).
    """
    return ErrorReply(
        429,
        message="This request would exceed your account's rate limit. Please try again later.",
        headers={
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(reset_epoch),
            "anthropic-ratelimit-unified-representative-claim": claim,
            f"anthropic-ratelimit-unified-{claim.replace('_', '-')}-status": "rejected",
            f"anthropic-ratelimit-unified-{claim.replace('_', '-')}-reset": str(reset_epoch),
            f"anthropic-ratelimit-unified-{claim.replace('_', '-')}-utilization": "1.0",
        },
    )


# What the server says once the script is used up: a 400 is not retried, so a test whose
# script is too short fails fast and visibly instead of spinning through retries.
SCRIPT_EXHAUSTED = ErrorReply(400, message="fake_anthropic: the script has no more replies")


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as received; `script_index` is set when it consumed a script entry.

    `received_at` is a `time.monotonic` reading, for measuring the CLI's retry timing.
    """

    received_at: float
    method: str
    path: str
    headers: Mapping[str, str]
    body: JsonObject | None
    script_index: int | None


def is_scripted_request(method: str, path: str, body: JsonObject | None) -> bool:
    """Tell whether a request is a main-loop Messages call that must consume the script.

    True for ``POST /v1/messages`` (any query string) except token counting, the quota probe
    (``max_tokens`` 1) and tool-less helper calls on a haiku model.
    """
    route = path.split("?", 1)[0].rstrip("/")
    if method != "POST" or route != "/v1/messages" or body is None:
        return False
    if body.get("max_tokens") == 1:
        return False
    return not ("haiku" in str(body.get("model", "")) and not body.get("tools"))


def _sse(event: str, data: JsonObject) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _message(msg_id: str, model: str, content: list[JsonObject], stop: str | None) -> JsonObject:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
    }


def _usage(input_tokens: int, output_tokens: int) -> JsonObject:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


class FakeAnthropic:
    """A scripted Messages API server, listening on 127.0.0.1 from construction to `close`.

    `url` is the base URL for ``ANTHROPIC_BASE_URL``.  `requests` holds the JSON bodies of the
    scripted requests in arrival order; `log` holds every request.  Use as a context manager,
    or call `close`, which also releases connections held by `SilentReply`.
    """

    def __init__(
        self,
        script: Sequence[Reply],
        *,
        when_exhausted: Reply = SCRIPT_EXHAUSTED,
        is_scripted: Callable[[str, str, JsonObject | None], bool] = is_scripted_request,
    ) -> None:
        self._script = list(script)
        self._when_exhausted = when_exhausted
        self._is_scripted = is_scripted
        self._lock = threading.Lock()
        self._next = 0
        self._ids = itertools.count(1)
        self._closing = threading.Event()
        self.requests: list[JsonObject] = []
        self.log: list[RecordedRequest] = []
        self._server = _Server(self)
        host, port = self._server.server_address[:2]
        self.url = f"http://{host!s}:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fake-anthropic", daemon=True
        )
        self._thread.start()

    @property
    def remaining(self) -> int:
        """How many script entries have not been served yet."""
        with self._lock:
            return max(0, len(self._script) - self._next)

    def close(self) -> None:
        """Stop serving, drop every open connection, and wait for the server thread."""
        self._closing.set()
        self._server.shutdown()
        self._server.drop_connections()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Called from handler threads.

    def _take(self, method: str, path: str, headers: Mapping[str, str], body: JsonObject | None
              ) -> tuple[Reply | None, RecordedRequest]:
        """Record a request and pick its reply: the next script entry, or None for side calls."""
        with self._lock:
            reply: Reply | None = None
            index: int | None = None
            if self._is_scripted(method, path, body):
                index = self._next
                self._next += 1
                reply = self._script[index] if index < len(self._script) else self._when_exhausted
                if body is not None:
                    self.requests.append(body)
            record = RecordedRequest(time.monotonic(), method, path, dict(headers), body, index)
            self.log.append(record)
            return reply, record

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_fake_{next(self._ids):04d}"

    def _wait_closing(self) -> None:
        self._closing.wait()


class _Server(ThreadingHTTPServer):
    """The HTTP server; it tracks live connections so that `close` can cut them."""

    daemon_threads = True
    # Port 0 lets the kernel pick a free port; binding only to loopback keeps it offline.
    address: tuple[str, int] = ("127.0.0.1", 0)

    def __init__(self, owner: FakeAnthropic) -> None:
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(self.address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Shut every open connection down, waking handlers blocked on keep-alive reads."""
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # Already closed by the peer.


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection; HTTP/1.1 so the CLI's keep-alive connections are reused."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        # The request log on FakeAnthropic replaces stderr chatter.
        pass

    def do_POST(self) -> None:  # noqa: N802 - stdlib naming
        self._serve()

    def do_GET(self) -> None:  # noqa: N802
        self._serve()

    def do_HEAD(self) -> None:  # noqa: N802
        self._serve()

    def _read_body(self) -> JsonObject | None:
        length = int(self.headers.get("content-length") or 0)
        if length <= 0:
            return None
        raw = self.rfile.read(length)
        try:
            parsed = json.loads(raw)
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def _serve(self) -> None:
        owner = self.server.owner
        body = self._read_body()
        reply, _record = owner._take(self.command, self.path, dict(self.headers), body)
        if reply is None:
            self._serve_side(body)
        elif isinstance(reply, SilentReply):
            owner._wait_closing()
            # Close without a response: the client sees the connection drop only now.
            self.close_connection = True
        elif isinstance(reply, ErrorReply):
            self._send_error_reply(reply)
        else:
            self._send_message(reply, body or {})

    def _send(self, status: int, content_type: str, payload: bytes,
              headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.send_header("request-id", self.server.owner._new_id("req"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _send_error_reply(self, reply: ErrorReply) -> None:
        error_type = reply.error_type or _ERROR_TYPES.get(reply.status, "api_error")
        payload = {"type": "error", "error": {"type": error_type, "message": reply.message}}
        self._send(reply.status, "application/json", json.dumps(payload).encode(), reply.headers)

    def _serve_side(self, body: JsonObject | None) -> None:
        """Answer a request outside the script with the smallest plausible success."""
        route = self.path.split("?", 1)[0].rstrip("/")
        if route.endswith("/count_tokens"):
            self._send(200, "application/json", b'{"input_tokens": 1}')
        elif self.command == "POST" and route == "/v1/messages" and body is not None:
            self._send_message(TextReply("ok", input_tokens=1, output_tokens=1), body)
        else:
            self._send(200, "application/json", b"{}")

    def _send_message(self, reply: TextReply | ToolUseReply, body: JsonObject) -> None:
        owner = self.server.owner
        model = str(body.get("model", "claude-fake"))
        msg_id = owner._new_id("msg")
        if isinstance(reply, TextReply):
            block: JsonObject = {"type": "text", "text": reply.text}
            stop = "end_turn"
        else:
            tool_id = reply.tool_use_id or owner._new_id("toolu")
            block = {"type": "tool_use", "id": tool_id, "name": reply.name,
                     "input": dict(reply.input)}
            stop = "tool_use"
        if not body.get("stream"):
            # The CLI can fall back to a non-streaming request after a failed stream.
            message = _message(msg_id, model, [block], stop)
            message["usage"] = _usage(reply.input_tokens, reply.output_tokens)
            self._send(200, "application/json", json.dumps(message).encode())
            return
        payload = b"".join(_stream_events(msg_id, model, block, stop,
                                          reply.input_tokens, reply.output_tokens))
        self._send(200, "text/event-stream", payload, {"cache-control": "no-cache"})


def _stream_events(msg_id: str, model: str, block: JsonObject, stop: str,
                   input_tokens: int, output_tokens: int) -> Iterator[bytes]:
    """Yield the SSE events of a one-block message, as the streaming Messages API sends them."""
    start = _message(msg_id, model, [], None)
    # The real API reports the input tokens up front and the output tokens at the end.
    start["usage"] = _usage(input_tokens, 1)
    yield _sse("message_start", {"type": "message_start", "message": start})
    if block["type"] == "text":
        yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}})
        delta: JsonObject = {"type": "text_delta", "text": block["text"]}
    else:
        opened = {key: value for key, value in block.items() if key != "input"}
        yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {**opened, "input": {}}})
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse("message_delta", {"type": "message_delta",
                                 "delta": {"stop_reason": stop, "stop_sequence": None},
                                 "usage": {"output_tokens": output_tokens}})
    yield _sse("message_stop", {"type": "message_stop"})
