"""Scripted OpenAI-style APIs on 127.0.0.1: the Responses API (Codex) and Chat Completions (opencode).

`FakeOpenAI(script)` serves both wire protocols on one port, each from the same script:

- ``POST /v1/responses`` (Codex with ``wire_api = "responses"``): server-sent events
  ``response.created``, ``response.output_item.added``, for a tool call
  ``response.function_call_arguments.delta``/``.done``, for a text ``response.output_text.delta``
  and ``.done``, then ``response.output_item.done`` and ``response.completed`` with ``usage``
  (``input_tokens``, ``output_tokens``, their details, ``total_tokens``).
- ``POST /v1/chat/completions`` with ``tools`` (opencode through ``@ai-sdk/openai-compatible``):
  ``chat.completion.chunk`` events with a ``content`` or ``tool_calls`` delta, a chunk with the
  ``finish_reason``, a chunk with ``usage`` and ``data: [DONE]``.  A chat request without tools
  (opencode's title generator) is a side call: it gets a short title and leaves the script alone.

Any other request (``GET /v1/models`` and the like) gets an empty success.  Errors are OpenAI's
``{"error": {"message", "type", "code"}}`` bodies.

Structured answers (`structured_output`): Codex with ``--output-schema FILE`` asks the Responses
API for a final answer in the schema (``text.format = {"type": "json_schema", "strict": true,
"name": "codex_output_schema", "schema": ...}``), and the model's answer is then the JSON text
of an ordinary ``output_text``.  A `StructuredReply` is that text, served only to a request that
asked for a ``json_schema`` format; a request that did not gets a 400 (a model without the
format would answer in prose), so a CLI that dropped the schema fails where it happened.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tests.fake_http import (
    Answer,
    ErrorReply,
    Ids,
    JsonObject,
    Reply,
    ScriptedServer,
    TextReply,
    ToolCallReply,
    json_answer,
    sse,
    stream_answer,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "permission_error",
    404: "not_found_error",
    429: "rate_limit_exceeded",
}
_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
SCRIPT_EXHAUSTED = ErrorReply(400, "fake_openai: the script has no more replies")
NO_FORMAT = ErrorReply(
    400, "fake_openai: a structured answer was scripted, but no json_schema format was asked for"
)


@dataclass(frozen=True)
class StructuredReply(TextReply):
    """A final answer whose text is JSON in the schema the request's ``text.format`` names."""


def structured_output(**fields: object) -> StructuredReply:
    """The final answer of an ``--output-schema`` run: the JSON object ``fields`` as its text."""
    return StructuredReply(json.dumps(fields))


def asked_format(body: JsonObject) -> JsonObject | None:
    """The ``json_schema`` format a Responses request asked for (``text.format``), or None."""
    text = body.get("text")
    found = text.get("format") if isinstance(text, dict) else None
    return found if isinstance(found, dict) and found.get("type") == "json_schema" else None


def _route(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/")


class OpenAIProtocol:
    """The two OpenAI wire protocols; see the module docstring."""

    def is_scripted(self, method: str, path: str, body: JsonObject | None) -> bool:
        """True for Responses calls and for chat completions that offer tools."""
        if method != "POST" or body is None:
            return False
        route = _route(path)
        if route.endswith("/responses"):
            return True
        return route.endswith("/chat/completions") and bool(body.get("tools"))

    def side_answer(self, method: str, path: str, body: JsonObject | None) -> Answer:
        """A title for opencode's tool-less chat call; an empty list or object otherwise."""
        route = _route(path)
        if method == "POST" and route.endswith("/chat/completions") and body is not None:
            return self.render(TextReply("Scripted task", 5, 3), path, body, Ids())
        if route.endswith("/models"):
            return json_answer({"object": "list", "data": []})
        return json_answer({})

    def render(self, reply: TextReply | ToolCallReply, path: str, body: JsonObject, ids: Ids) -> Answer:
        """The SSE stream for `reply` in the protocol the path names."""
        model = str(body.get("model", "fake-model"))
        if _route(path).endswith("/responses"):
            if isinstance(reply, StructuredReply) and asked_format(body) is None:
                return self.error(NO_FORMAT)
            return stream_answer(list(_responses_events(reply, model, ids)))
        if body.get("stream") is False:
            return json_answer(_chat_message(reply, model, ids))
        return stream_answer(list(_chat_events(reply, model, ids)))

    def error(self, reply: ErrorReply) -> Answer:
        """OpenAI's error body for the status."""
        kind = _ERROR_TYPES.get(reply.status, "server_error")
        payload = {
            "error": {
                "message": reply.message,
                "type": kind,
                "param": None,
                "code": reply.code or _ERROR_CODES.get(reply.status),
            }
        }
        return Answer(reply.status, "application/json", json.dumps(payload).encode(), reply.headers)

    def opening(self, path: str, body: JsonObject, ids: Ids) -> bytes:
        """``response.created`` for the Responses API; the role chunk for chat completions."""
        model = str(body.get("model", "fake-model"))
        if _route(path).endswith("/responses"):
            return sse(_created(ids.new("resp"), model), "response.created")
        return sse(_chunk(ids.new("chatcmpl"), model, {"role": "assistant", "content": ""}))


class FakeOpenAI(ScriptedServer):
    """A scripted OpenAI API; `url` + ``/v1`` is the base URL to configure in the CLI."""

    def __init__(self, script: Sequence[Reply], *, when_exhausted: Reply = SCRIPT_EXHAUSTED) -> None:
        """Start serving `script`; scripted requests past its end get `when_exhausted`."""
        super().__init__(OpenAIProtocol(), script, when_exhausted=when_exhausted)

    @property
    def base_url(self) -> str:
        """The base URL including ``/v1``, as Codex's ``base_url`` and opencode's ``baseURL``."""
        return f"{self.url}/v1"


# -- the Responses API ----------------------------------------------------------------------------


def _arguments(reply: ToolCallReply) -> str:
    """The call's arguments as the JSON text both protocols carry (freeform input as is)."""
    return reply.arguments if isinstance(reply.arguments, str) else json.dumps(dict(reply.arguments))


def _created(response_id: str, model: str) -> JsonObject:
    return {
        "type": "response.created",
        "response": {"id": response_id, "object": "response", "status": "in_progress", "model": model},
    }


def _responses_usage(reply: TextReply | ToolCallReply) -> JsonObject:
    return {
        "input_tokens": reply.input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": reply.output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _responses_events(reply: TextReply | ToolCallReply, model: str, ids: Ids) -> Iterator[bytes]:
    """The Responses API's events for one output item, then ``response.completed``."""
    response_id = ids.new("resp")
    yield sse(_created(response_id, model), "response.created")
    if isinstance(reply, ToolCallReply) and isinstance(reply.arguments, str):
        # A freeform tool: its input is plain text, and no argument deltas are streamed.
        item: JsonObject = {
            "type": "custom_tool_call",
            "id": ids.new("ctc"),
            "call_id": reply.call_id or ids.new("call"),
            "name": reply.name,
            "input": reply.arguments,
            "status": "completed",
        }
        yield sse(
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "input": ""}},
            "response.output_item.added",
        )
    elif isinstance(reply, ToolCallReply):
        arguments = _arguments(reply)
        item = {
            "type": "function_call",
            "id": ids.new("fc"),
            "call_id": reply.call_id or ids.new("call"),
            "name": reply.name,
            "arguments": arguments,
            "status": "completed",
        }
        yield sse(
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "arguments": ""}},
            "response.output_item.added",
        )
        for name, extra in (
            ("response.function_call_arguments.delta", {"delta": arguments}),
            ("response.function_call_arguments.done", {"arguments": arguments}),
        ):
            yield sse({"type": name, "item_id": item["id"], "output_index": 0, **extra}, name)
    else:
        part: JsonObject = {"type": "output_text", "text": reply.text, "annotations": []}
        item = {"type": "message", "id": ids.new("msg"), "role": "assistant", "status": "completed"}
        yield sse(
            {"type": "response.output_item.added", "output_index": 0, "item": {**item, "content": []}},
            "response.output_item.added",
        )
        at = {"item_id": item["id"], "output_index": 0, "content_index": 0}
        extras: tuple[tuple[str, JsonObject], ...] = (
            ("response.content_part.added", {"part": {**part, "text": ""}}),
            ("response.output_text.delta", {"delta": reply.text}),
            ("response.output_text.done", {"text": reply.text}),
            ("response.content_part.done", {"part": part}),
        )
        for name, extra in extras:
            yield sse({"type": name, **at, **extra}, name)
        item["content"] = [part]
    yield sse(
        {"type": "response.output_item.done", "output_index": 0, "item": item}, "response.output_item.done"
    )
    completed = {
        "id": response_id,
        "object": "response",
        "status": "completed",
        "model": model,
        "output": [item],
        "usage": _responses_usage(reply),
    }
    yield sse({"type": "response.completed", "response": completed}, "response.completed")


# -- Chat Completions -----------------------------------------------------------------------------


def _chunk(chunk_id: str, model: str, delta: JsonObject, finish: str | None = None) -> JsonObject:
    return {
        "id": chunk_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _chat_usage(reply: TextReply | ToolCallReply) -> JsonObject:
    return {
        "prompt_tokens": reply.input_tokens,
        "completion_tokens": reply.output_tokens,
        "total_tokens": reply.input_tokens + reply.output_tokens,
    }


def _tool_call(reply: ToolCallReply, ids: Ids) -> JsonObject:
    return {
        "id": reply.call_id or ids.new("call"),
        "type": "function",
        "function": {"name": reply.name, "arguments": _arguments(reply)},
    }


def _chat_events(reply: TextReply | ToolCallReply, model: str, ids: Ids) -> Iterator[bytes]:
    """The chunks of one streamed chat completion, its usage chunk and ``[DONE]``."""
    chunk_id = ids.new("chatcmpl")
    yield sse(_chunk(chunk_id, model, {"role": "assistant", "content": ""}))
    if isinstance(reply, ToolCallReply):
        yield sse(_chunk(chunk_id, model, {"tool_calls": [{"index": 0, **_tool_call(reply, ids)}]}))
        finish = "tool_calls"
    else:
        yield sse(_chunk(chunk_id, model, {"content": reply.text}))
        finish = "stop"
    yield sse(_chunk(chunk_id, model, {}, finish))
    usage = {**_chunk(chunk_id, model, {}), "choices": [], "usage": _chat_usage(reply)}
    yield sse(usage)
    yield sse("[DONE]")


def _chat_message(reply: TextReply | ToolCallReply, model: str, ids: Ids) -> JsonObject:
    """A non-streamed chat completion (``stream: false``)."""
    message: JsonObject = {"role": "assistant", "content": None}
    if isinstance(reply, ToolCallReply):
        message["tool_calls"] = [_tool_call(reply, ids)]
        finish = "tool_calls"
    else:
        message["content"] = reply.text
        finish = "stop"
    return {
        "id": ids.new("chatcmpl"),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
        "usage": _chat_usage(reply),
    }
