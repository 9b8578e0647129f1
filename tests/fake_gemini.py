"""A scripted Gemini API (``generativelanguage``, v1beta) on 127.0.0.1, for the real Gemini CLI.

The CLI's main-loop calls are ``POST /v1beta/models/MODEL:streamGenerateContent?alt=sse``; each
takes the next reply of the script and gets server-sent ``data:`` chunks of
``GenerateContentResponse``: ``candidates[0].content.parts`` with a ``text`` or a
``functionCall {name, args}``, ``finishReason: STOP`` and ``usageMetadata``
(``promptTokenCount``, ``candidatesTokenCount``, ``totalTokenCount``) plus a ``modelVersion``.

Side calls leave the script alone: ``:generateContent`` (the model router without ``-m``, and
other JSON-schema helper calls) gets a JSON text choosing ``flash``; ``:countTokens`` a count;
anything else an empty object.  Errors are Google's ``{"error": {"code", "message", "status"}}``.
"""

from __future__ import annotations

import json
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
    from collections.abc import Sequence

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
SCRIPT_EXHAUSTED = ErrorReply(400, "fake_gemini: the script has no more replies")
MODEL_VERSION = "gemini-fake-001"


def _route(path: str) -> str:
    return path.split("?", 1)[0].rstrip("/")


def _usage(prompt: int, output: int) -> JsonObject:
    return {"promptTokenCount": prompt, "candidatesTokenCount": output, "totalTokenCount": prompt + output}


def _response(parts: list[JsonObject], usage: JsonObject, finish: str | None = "STOP") -> JsonObject:
    candidate: JsonObject = {"content": {"role": "model", "parts": parts}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": MODEL_VERSION}


class GeminiProtocol:
    """The Gemini wire protocol; see the module docstring."""

    def is_scripted(self, method: str, path: str, body: JsonObject | None) -> bool:
        """True for ``POST …:streamGenerateContent``."""
        return method == "POST" and _route(path).endswith(":streamGenerateContent")

    def side_answer(self, method: str, path: str, body: JsonObject | None) -> Answer:
        """A router-shaped JSON text for ``:generateContent``; a count for ``:countTokens``."""
        route = _route(path)
        if route.endswith(":generateContent"):
            text = json.dumps({"reasoning": "scripted", "model_choice": "flash"})
            return json_answer(_response([{"text": text}], _usage(5, 5)))
        if route.endswith(":countTokens"):
            return json_answer({"totalTokens": 1})
        return json_answer({})

    def render(self, reply: TextReply | ToolCallReply, path: str, body: JsonObject, ids: Ids) -> Answer:
        """One SSE chunk carrying the whole reply, its finish reason and usage."""
        if isinstance(reply, ToolCallReply):
            args = {"input": reply.arguments} if isinstance(reply.arguments, str) else dict(reply.arguments)
            part: JsonObject = {"functionCall": {"name": reply.name, "args": args}}
            if reply.call_id:
                part["functionCall"]["id"] = reply.call_id
        else:
            part = {"text": reply.text}
        chunk = _response([part], _usage(reply.input_tokens, reply.output_tokens))
        return stream_answer([sse(chunk)])

    def error(self, reply: ErrorReply) -> Answer:
        """Google's error body for the status."""
        payload = {
            "error": {
                "code": reply.status,
                "message": reply.message,
                "status": _STATUS_NAMES.get(reply.status, "UNKNOWN"),
            }
        }
        return Answer(reply.status, "application/json", json.dumps(payload).encode(), reply.headers)

    def opening(self, path: str, body: JsonObject, ids: Ids) -> bytes:
        """Nothing: a Gemini stream has no opening event, so a stall is headers and silence."""
        return b""


class FakeGemini(ScriptedServer):
    """A scripted Gemini API; `url` is the value for ``GOOGLE_GEMINI_BASE_URL``."""

    def __init__(self, script: Sequence[Reply], *, when_exhausted: Reply = SCRIPT_EXHAUSTED) -> None:
        """Start serving `script`; scripted requests past its end get `when_exhausted`."""
        super().__init__(GeminiProtocol(), script, when_exhausted=when_exhausted)
