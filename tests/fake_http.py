"""The machinery shared by the scripted model APIs on 127.0.0.1 (`fake_openai`, `fake_gemini`).

A `ScriptedServer` answers each *scripted* request (the agent's main-loop model calls, as its
`WireProtocol` decides) with the next `Reply` of a script, in order, records every request, and
answers side requests (title generation, model lists, token counts) harmlessly without using up
the script.  The replies are protocol-neutral: a text, a tool call, an HTTP error, a connection
that never gets headers (`SilentReply`), or a stream that opens and then goes quiet
(`StallReply`); the protocol turns each into its own bytes.  Retries of the CLI consume the
script like any request, so error scenarios are best written with `when_exhausted`.

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
from typing import TYPE_CHECKING, Any, Protocol, Self

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class TextReply:
    """A final assistant text that ends the turn; the token counts are reported as usage."""

    text: str
    input_tokens: int = 100
    output_tokens: int = 20


@dataclass(frozen=True)
class ToolCallReply:
    """A call of the CLI's tool `name` with `arguments`; the CLI runs it and reports back.

    `arguments` as a string is the input of a freeform tool (the Responses API's
    ``custom_tool_call``, e.g. Codex's ``apply_patch``); a mapping is JSON arguments.
    """

    name: str
    arguments: Mapping[str, object] | str
    call_id: str | None = None
    input_tokens: int = 100
    output_tokens: int = 20


@dataclass(frozen=True)
class ErrorReply:
    """An HTTP error `status` with the protocol's JSON error body; `headers` sent verbatim.

    `code` overrides the protocol's error code for the status (OpenAI's ``error.code``, e.g.
    ``insufficient_quota``).
    """

    status: int
    message: str = "scripted error"
    headers: Mapping[str, str] = field(default_factory=dict)
    code: str | None = None


@dataclass(frozen=True)
class SilentReply:
    """Read the request, then send nothing at all (not even headers) until the server closes."""


@dataclass(frozen=True)
class StallReply:
    """Send the headers of a streamed answer and its opening event, then nothing more."""


Reply = TextReply | ToolCallReply | ErrorReply | SilentReply | StallReply


@dataclass(frozen=True)
class Answer:
    """A complete HTTP response as a protocol renders it."""

    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


class WireProtocol(Protocol):
    """What one model API supplies: which requests are scripted and how replies look on the wire."""

    def is_scripted(self, method: str, path: str, body: JsonObject | None) -> bool:
        """True for a main-loop model call, which consumes the script."""

    def side_answer(self, method: str, path: str, body: JsonObject | None) -> Answer:
        """A harmless success for any other request."""

    def render(self, reply: TextReply | ToolCallReply, path: str, body: JsonObject, ids: Ids) -> Answer:
        """The whole streamed (or plain) answer carrying `reply`."""

    def error(self, reply: ErrorReply) -> Answer:
        """The API's error response for `reply`."""

    def opening(self, path: str, body: JsonObject, ids: Ids) -> bytes:
        """The first bytes of a stream (sent by `StallReply` before it goes quiet); may be empty."""


class Ids:
    """Fresh ids such as ``call_fake_0003``, unique within one server."""

    def __init__(self) -> None:
        self._counter = itertools.count(1)
        self._lock = threading.Lock()

    def new(self, prefix: str) -> str:
        """Return a fresh id starting with `prefix`."""
        with self._lock:
            return f"{prefix}_fake_{next(self._counter):04d}"


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as received; `script_index` is set when it consumed a script entry.

    `received_at` is a `time.monotonic` reading, for measuring a CLI's retry timing.
    """

    received_at: float
    method: str
    path: str
    headers: Mapping[str, str]
    body: JsonObject | None
    script_index: int | None


def sse(data: JsonObject | str, event: str | None = None) -> bytes:
    """One server-sent event: an optional ``event:`` line and a ``data:`` line (JSON or raw)."""
    text = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {text}\n\n".encode()


class ScriptedServer:
    """A scripted model API listening on 127.0.0.1 from construction to `close`.

    `url` is ``http://127.0.0.1:PORT`` (no path).  `requests` lists the JSON bodies of the
    scripted requests in arrival order; `log` lists every request.  Use as a context manager,
    or call `close`, which also ends the connections held open by silent and stalled replies.
    """

    def __init__(self, protocol: WireProtocol, script: Sequence[Reply], *, when_exhausted: Reply) -> None:
        """Start serving `script`; scripted requests past its end get `when_exhausted`."""
        self.protocol = protocol
        self.ids = Ids()
        self._script = list(script)
        self._when_exhausted = when_exhausted
        self._lock = threading.Lock()
        self._served = 0
        self._log: list[RecordedRequest] = []
        self.closing = threading.Event()  # handlers holding a connection open wait on it
        self._server = _Server(self)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-model-api", daemon=True
        )
        self._thread.start()

    def take(
        self, method: str, path: str, headers: Mapping[str, str], body: JsonObject | None
    ) -> Reply | None:
        """Record a request and return its reply: the next script entry, or None for a side call."""
        with self._lock:
            reply: Reply | None = None
            index: int | None = None
            if self.protocol.is_scripted(method, path, body):
                index = self._served
                self._served += 1
                reply = self._script[index] if index < len(self._script) else self._when_exhausted
            self._log.append(RecordedRequest(time.monotonic(), method, path, dict(headers), body, index))
            return reply

    @property
    def log(self) -> list[RecordedRequest]:
        """Every request received so far, scripted or not, in order."""
        with self._lock:
            return list(self._log)

    @property
    def requests(self) -> list[JsonObject]:
        """The JSON bodies of the scripted requests received so far, in order."""
        return [r.body or {} for r in self.log if r.script_index is not None]

    @property
    def remaining(self) -> int:
        """How many script entries have not been served yet."""
        with self._lock:
            return max(0, len(self._script) - self._served)

    def close(self) -> None:
        """Stop serving, end every connection and handler, and release the port; idempotent."""
        if self.closing.is_set():
            return
        self.closing.set()  # first: it releases the handlers that hold a connection open
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

    def __init__(self, owner: ScriptedServer) -> None:
        self.owner = owner
        self._conns: set[socket.socket] = set()
        self._handlers: set[threading.Thread] = set()
        self._track_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)  # loopback only; the kernel picks the port

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
        """Cut every open connection and wait up to `timeout_s` for the handlers to finish."""
        with self._track_lock:
            conns, handlers = list(self._conns), list(self._handlers)
        for conn in conns:
            with contextlib.suppress(OSError):  # already closed by the peer
                conn.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout_s
        for thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection; HTTP/1.1 so the CLIs' keep-alive connections are reused."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        """Stay quiet: the server's request log replaces stderr chatter."""

    def do_POST(self) -> None:
        """Serve a POST."""
        self._serve()

    def do_GET(self) -> None:
        """Serve a GET."""
        self._serve()

    def do_HEAD(self) -> None:
        """Serve a HEAD."""
        self._serve()

    def _read_body(self) -> JsonObject | None:
        length = int(self.headers.get("content-length") or 0)
        if length <= 0:
            return None
        try:
            parsed = json.loads(self.rfile.read(length))
        except ValueError:
            return None
        return parsed if isinstance(parsed, dict) else None

    def _serve(self) -> None:
        owner = self.server.owner
        protocol = owner.protocol
        body = self._read_body()
        reply = owner.take(self.command, self.path, dict(self.headers), body)
        if reply is None:
            self._send(protocol.side_answer(self.command, self.path, body))
        elif isinstance(reply, SilentReply):
            owner.closing.wait()
            self.close_connection = True  # only now, with nothing sent, does the client see an end
        elif isinstance(reply, StallReply):
            self._stall(protocol.opening(self.path, body or {}, owner.ids))
        elif isinstance(reply, ErrorReply):
            self._send(protocol.error(reply))
        else:
            self._send(protocol.render(reply, self.path, body or {}, owner.ids))

    def _send(self, answer: Answer) -> None:
        self.send_response(answer.status)
        self.send_header("content-type", answer.content_type)
        self.send_header("content-length", str(len(answer.body)))
        for name, value in answer.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(answer.body)
        self.wfile.flush()

    def _stall(self, opening: bytes) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        # Chunked, as real APIs stream, so no length tells the client the body is short.
        self.send_header("transfer-encoding", "chunked")
        self.end_headers()
        if opening:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(opening), opening))
        self.wfile.flush()
        self.server.owner.closing.wait()
        self.close_connection = True


def json_answer(payload: JsonObject, status: int = 200) -> Answer:
    """A JSON response."""
    return Answer(status, "application/json", json.dumps(payload).encode())


def stream_answer(events: Sequence[bytes], headers: Mapping[str, str] | None = None) -> Answer:
    """A server-sent-events response made of `events`."""
    return Answer(
        200, "text/event-stream", b"".join(events), {"cache-control": "no-cache", **(headers or {})}
    )
