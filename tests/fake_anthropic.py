"""A scripted Anthropic Messages API on 127.0.0.1, for driving the real Claude Code CLI offline.

`FakeAnthropic` answers each *scripted* ``POST /v1/messages`` with the next `Reply` of its
script, in order, and records every request it receives.  The CLI streams its main-loop
requests, so replies go out as server-sent events in the order the Messages API uses:
``message_start``, ``content_block_start``/``_delta``/``_stop``, ``message_delta`` (stop
reason and output tokens), ``message_stop``.  A non-streaming request (the CLI's fallback
after a stream died) gets the same reply as one JSON message.

Which requests consume the script (`is_scripted_request`): every ``POST /v1/messages``
except token counting, the CLI's quota probe (``max_tokens`` 1) and tool-less helper calls
on a "haiku" model (title or summary generation).  With 2.1.328 in ``-p`` mode and
``CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1`` only main-loop requests were ever seen, but
the helpers exist in the CLI and must not shift the script if they appear.  Requests outside
the script get a harmless success and are only logged (without that variable the CLI sends
``HEAD /api/hello`` first).  Retries and fallbacks of the CLI *do* consume the script: a 5xx
is answered once per attempt, and a generic 400 makes the CLI resend the same turn up to five
times with fewer beta features, so error scenarios are best scripted with `when_exhausted`.

Stdlib only: the test suite must not need extra packages.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import socketserver
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Self

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence
    from types import TracebackType

JsonObject = dict[str, Any]

# The API's error `type` for each status it documents.
_ERROR_TYPES = {
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
    `headers` are sent verbatim, e.g. ``retry-after`` or the ``anthropic-ratelimit-unified-*``
    headers of a subscription usage limit.
    """

    status: int
    message: str = "scripted error"
    error_type: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SilentReply:
    """Read the request, then send nothing at all until the server closes: a dead connection."""


@dataclass(frozen=True)
class StallReply:
    """Start a streamed answer (headers and ``message_start``), then send nothing more.

    A connection that dies mid-stream, where `SilentReply` never sends a byte.
    """

    input_tokens: int = 100


Reply = TextReply | ToolUseReply | ErrorReply | SilentReply | StallReply


def write_file(file_path: str, content: str) -> ToolUseReply:
    """Return a reply that makes the CLI's ``Write`` tool create `file_path` with `content`."""
    return ToolUseReply("Write", {"file_path": file_path, "content": content})


def structured_output(**fields: object) -> ToolUseReply:
    """Return a reply that ends a ``--json-schema`` run with the structured result ``fields``.

    With ``--json-schema`` the CLI (2.1.328) offers the model a client tool ``StructuredOutput``
    whose ``input_schema`` is the schema; the model's call of it ends the run, and the result
    event carries the call's input as ``structured_output`` (and its JSON text as ``result``).
    """
    return ToolUseReply("StructuredOutput", fields)


def run_bash(command: str, description: str = "scripted command") -> ToolUseReply:
    """Return a reply that asks the CLI's ``Bash`` tool to run `command`."""
    return ToolUseReply("Bash", {"command": command, "description": description})


def usage_limit_reply(reset_epoch: int, claim: str = "five_hour") -> ErrorReply:
    """Return a 429 shaped like a subscription usage limit ("You've hit your … limit").

    The CLI reads the ``anthropic-ratelimit-unified-*`` headers only when it runs with a
    subscription token (``CLAUDE_CODE_OAUTH_TOKEN``); with an API key this is a plain 429.
    `claim` is the limit that ran out (``five_hour``, ``seven_day``); `reset_epoch` is when
    it resets, in Unix seconds.
    """
    window = claim.replace("_", "-")
    return ErrorReply(
        429,
        message="This request would exceed your account's rate limit. Please try again later.",
        headers={
            "anthropic-ratelimit-unified-status": "rejected",
            "anthropic-ratelimit-unified-reset": str(reset_epoch),
            "anthropic-ratelimit-unified-representative-claim": claim,
            f"anthropic-ratelimit-unified-{window}-status": "rejected",
            f"anthropic-ratelimit-unified-{window}-reset": str(reset_epoch),
            f"anthropic-ratelimit-unified-{window}-utilization": "1.0",
        },
    )


# What the server says once the script is used up: a 400 is not retried with delays, so a
# test whose script is too short fails fast and visibly instead of waiting through retries.
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
    """Tell whether a request is a main-loop Messages call, which consumes the script.

    True for ``POST /v1/messages`` (any query string) with a JSON body, except the quota
    probe (``max_tokens`` 1) and tool-less helper calls on a haiku model.
    """
    route = path.split("?", 1)[0].rstrip("/")
    if method != "POST" or route != "/v1/messages" or body is None:
        return False
    if body.get("max_tokens") == 1:
        return False
    return not ("haiku" in str(body.get("model", "")) and not body.get("tools"))


class _Exchange:
    """The script, the request log and the id counter, shared by all handler threads."""

    def __init__(
        self,
        script: Sequence[Reply],
        when_exhausted: Reply,
        is_scripted: Callable[[str, str, JsonObject | None], bool],
    ) -> None:
        self._script = list(script)
        self._when_exhausted = when_exhausted
        self._is_scripted = is_scripted
        self._lock = threading.Lock()
        self._served = 0
        self._ids = itertools.count(1)
        self.requests: list[JsonObject] = []
        self.log: list[RecordedRequest] = []
        # Set when the server closes; handlers holding a connection open wait on it.
        self.closing = threading.Event()

    def take(
        self, method: str, path: str, headers: Mapping[str, str], body: JsonObject | None
    ) -> Reply | None:
        """Record a request and return its reply: the next script entry, or None if a side call."""
        with self._lock:
            reply: Reply | None = None
            index: int | None = None
            if self._is_scripted(method, path, body):
                index = self._served
                self._served += 1
                reply = self._script[index] if index < len(self._script) else self._when_exhausted
                if body is not None:
                    self.requests.append(body)
            self.log.append(RecordedRequest(time.monotonic(), method, path, dict(headers), body, index))
            return reply

    def remaining(self) -> int:
        """Return how many script entries have not been served yet."""
        with self._lock:
            return max(0, len(self._script) - self._served)

    def new_id(self, prefix: str) -> str:
        """Return a fresh id such as ``msg_fake_0003``, unique within this server."""
        with self._lock:
            return f"{prefix}_fake_{next(self._ids):04d}"


class FakeAnthropic:
    """A scripted Messages API server, listening on 127.0.0.1 from construction to `close`.

    `url` is the base URL for ``ANTHROPIC_BASE_URL``.  `requests` lists the JSON bodies of
    the scripted requests in arrival order; `log` lists every request.  Use as a context
    manager, or call `close`, which also ends connections held by `SilentReply`.
    """

    def __init__(
        self,
        script: Sequence[Reply],
        *,
        when_exhausted: Reply = SCRIPT_EXHAUSTED,
        is_scripted: Callable[[str, str, JsonObject | None], bool] = is_scripted_request,
    ) -> None:
        """Start serving `script`; requests past its end get `when_exhausted`."""
        self._exchange = _Exchange(script, when_exhausted, is_scripted)
        self._server = _Server(self._exchange)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        # A short poll interval keeps close() quick: shutdown() waits for the next poll.
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-anthropic", daemon=True
        )
        self._thread.start()

    @property
    def requests(self) -> list[JsonObject]:
        """The JSON bodies of the scripted requests received so far, in order."""
        return list(self._exchange.requests)

    @property
    def log(self) -> list[RecordedRequest]:
        """Every request received so far, scripted or not, in order."""
        return list(self._exchange.log)

    @property
    def remaining(self) -> int:
        """How many script entries have not been served yet."""
        return self._exchange.remaining()

    def close(self) -> None:
        """Stop serving, end every connection and handler, and release the port; idempotent."""
        if self._exchange.closing.is_set():
            return
        # First: it releases the handlers that hold a connection open on purpose.
        self._exchange.closing.set()
        self._server.shutdown()
        self._thread.join()
        self._server.end_connections(timeout_s=5.0)
        self._server.server_close()

    def __enter__(self) -> Self:
        """Return the running server."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Close the server."""
        self.close()


class _Server(ThreadingHTTPServer):
    """The HTTP server; it tracks connections and handler threads so `close` can end them."""

    daemon_threads = True

    def __init__(self, exchange: _Exchange) -> None:
        self.exchange = exchange
        self._conns: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._track_lock = threading.Lock()
        # Port 0 lets the kernel pick a free port; loopback only, so nothing leaves the host.
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's host-name lookup, a needless DNS query."""
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = "127.0.0.1", self.server_address[1]

    def process_request_thread(
        self,
        request: socket.socket,  # type: ignore[override]
        client_address: tuple[str, int],
    ) -> None:
        """Serve one connection in this thread, tracked until it ends."""
        me = threading.current_thread()
        with self._track_lock:
            self._conns.add(request)
            self._handlers.add(me)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._track_lock:
                self._conns.discard(request)
                self._handlers.discard(me)

    def end_connections(self, timeout_s: float) -> None:
        """Cut every open connection and wait up to `timeout_s` for the handlers to finish.

        Shutting a socket down wakes a handler blocked reading the next keep-alive request,
        so each handler closes its own socket and none is left to the garbage collector.
        """
        with self._track_lock:
            conns, handlers = list(self._conns), list(self._handlers)
        for conn in conns:
            with contextlib.suppress(OSError):  # Already closed by the peer.
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection; HTTP/1.1 so the CLI's keep-alive connections are reused."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the request log of `FakeAnthropic` replaces stderr chatter."""

    def do_POST(self) -> None:
        """Serve a POST."""
        self._serve()

    def do_GET(self) -> None:
        """Serve a GET."""
        self._serve()

    def do_HEAD(self) -> None:
        """Serve a HEAD (the CLI's ``/api/hello`` connectivity check)."""
        self._serve()

    def do_PUT(self) -> None:
        """Serve a PUT."""
        self._serve()

    def do_DELETE(self) -> None:
        """Serve a DELETE."""
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
        exchange = self.server.exchange
        body = self._read_body()
        reply = exchange.take(self.command, self.path, dict(self.headers), body)
        if reply is None:
            self._send_side_answer(body)
        elif isinstance(reply, SilentReply):
            exchange.closing.wait()
            # Only now, with no response sent, does the client see the connection end.
            self.close_connection = True
        elif isinstance(reply, StallReply):
            self._send_stall(reply, body or {})
        elif isinstance(reply, ErrorReply):
            self._send_error_reply(reply)
        else:
            self._send_message(reply, body or {})

    def _send(
        self, status: int, content_type: str, payload: bytes, headers: Mapping[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(payload)))
        self.send_header("request-id", self.server.exchange.new_id("req"))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def _send_side_answer(self, body: JsonObject | None) -> None:
        """Answer a request outside the script with the smallest plausible success."""
        route = self.path.split("?", 1)[0].rstrip("/")
        if route.endswith("/count_tokens"):
            self._send(200, "application/json", b'{"input_tokens": 1}')
        elif self.command == "POST" and route == "/v1/messages" and body is not None:
            self._send_message(TextReply("ok", input_tokens=1, output_tokens=1), body)
        else:
            self._send(200, "application/json", b"{}")

    def _send_error_reply(self, reply: ErrorReply) -> None:
        error_type = reply.error_type or _ERROR_TYPES.get(reply.status, "api_error")
        payload = {"type": "error", "error": {"type": error_type, "message": reply.message}}
        self._send(reply.status, "application/json", json.dumps(payload).encode(), reply.headers)

    def _send_message(self, reply: TextReply | ToolUseReply, body: JsonObject) -> None:
        exchange = self.server.exchange
        message = _message(exchange.new_id("msg"), str(body.get("model", "claude-fake")))
        if isinstance(reply, TextReply):
            block: JsonObject = {"type": "text", "text": reply.text}
            message["stop_reason"] = "end_turn"
        else:
            block = {
                "type": "tool_use",
                "id": reply.tool_use_id or exchange.new_id("toolu"),
                "name": reply.name,
                "input": dict(reply.input),
            }
            message["stop_reason"] = "tool_use"
        if not body.get("stream"):
            message["content"] = [block]
            message["usage"] = _usage(reply.input_tokens, reply.output_tokens)
            self._send(200, "application/json", json.dumps(message).encode())
            return
        payload = b"".join(_stream_events(message, block, reply.input_tokens, reply.output_tokens))
        self._send(200, "text/event-stream", payload, {"cache-control": "no-cache"})

    def _send_stall(self, reply: StallReply, body: JsonObject) -> None:
        exchange = self.server.exchange
        start = _message(exchange.new_id("msg"), str(body.get("model", "claude-fake")))
        start["usage"] = _usage(reply.input_tokens, 1)
        event = _sse("message_start", {"type": "message_start", "message": start})
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        # Chunked, as the real API streams, so no length tells the client the body is short.
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        self.wfile.write(b"%x\r\n%s\r\n" % (len(event), event))
        self.wfile.flush()
        exchange.closing.wait()
        self.close_connection = True


def _message(msg_id: str, model: str) -> JsonObject:
    """Return an empty assistant message, as ``message_start`` carries it."""
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
    }


def _usage(input_tokens: int, output_tokens: int) -> JsonObject:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }


def _sse(event: str, data: JsonObject) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _stream_events(
    message: JsonObject, block: JsonObject, input_tokens: int, output_tokens: int
) -> Iterator[bytes]:
    """Yield the SSE events of a one-block `message`, as the streaming Messages API sends them.

    `message` carries the final ``stop_reason``, which only ``message_delta`` announces.
    """
    start = {**message, "stop_reason": None, "usage": _usage(input_tokens, 1)}
    # The API reports input tokens up front and the output token count at the end.
    yield _sse("message_start", {"type": "message_start", "message": start})
    if block["type"] == "text":
        opened: JsonObject = {"type": "text", "text": ""}
        delta: JsonObject = {"type": "text_delta", "text": block["text"]}
    else:
        # Tool input arrives as JSON text in pieces; one piece is a valid split.
        opened = {**block, "input": {}}
        delta = {"type": "input_json_delta", "partial_json": json.dumps(block["input"])}
    yield _sse("content_block_start", {"type": "content_block_start", "index": 0, "content_block": opened})
    yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
    yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
    yield _sse(
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
    )
    yield _sse("message_stop", {"type": "message_stop"})
