"""A fake Anthropic Messages API: `/v1/messages` (JSON and SSE), `/v1/models`, `x-api-key` checks, errors.

Errors come in Anthropic's shape `{"type": "error", "error": {"type", "message"}}`; a request without an
accepted key, or without `anthropic-version`, is refused as Anthropic refuses it.
"""

import json
import re
from collections.abc import Iterator

from .scripted import ScriptedFake, event_stream
from .server import RecordedRequest, Reply

ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}
CONTENT = ["Hel", "lo", " from", " Claude"]


def error_document(status: int, message: str) -> dict:
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"), "message": message}}


def sse(event: str, document: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(document)}\n\n".encode()


class FakeAnthropic(ScriptedFake):
    label = "Anthropic"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stop_reason = "end_turn"
        self.tool_use: dict | None = None  # {"id", "name", "input"}: answer with a tool call
        self.stream_error: str | None = None  # an `error` event after the first text delta

    def presented_key(self, request: RecordedRequest) -> str | None:
        return request.headers.get("x-api-key")

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply.json(error_document(status, message), status, {"request-id": "req_fake"})

    def unauthorized(self, request: RecordedRequest) -> Reply:
        return self.error_reply(401, "invalid x-api-key")

    def answer(self, request: RecordedRequest) -> Reply:
        if not re.fullmatch(r"20\d\d-\d\d-\d\d", request.headers.get("anthropic-version", "")):
            return self.error_reply(400, "anthropic-version: header is required")
        if request.method == "GET" and request.path == "/v1/models":
            model = {"type": "model", "id": "claude-sonnet-4-5", "display_name": "Claude Sonnet 4.5",
                     "created_at": "2025-09-29T00:00:00Z"}
            return Reply.json({"data": [model],
                               "has_more": True, "first_id": "claude-sonnet-4-5", "last_id": "claude-sonnet-4-5"})
        if request.method == "POST" and request.path == "/v1/messages/count_tokens":
            body = request.json()
            return Reply.json({"input_tokens": 10 * len(body.get("messages", []))})
        if request.method != "POST" or request.path != "/v1/messages":
            return self.error_reply(404, f"Not found: {request.path}")
        body = request.json()
        if "max_tokens" not in body:
            return self.error_reply(400, "max_tokens: Field required")
        if any(message.get("role") not in ("user", "assistant") for message in body.get("messages", [])):
            return self.error_reply(400, "messages: roles must be user or assistant")
        if body.get("stream"):
            return event_stream(self.events(body["model"]))
        content = [{"type": "text", "text": "".join(CONTENT)}]
        if self.tool_use:
            content.append({"type": "tool_use", **self.tool_use})
        return Reply.json({
            "id": "msg_fake01", "type": "message", "role": "assistant", "model": body["model"],
            "content": content, "stop_reason": "tool_use" if self.tool_use else self.stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": 12, "output_tokens": 6, "cache_read_input_tokens": 3},
        })

    def events(self, model: str) -> Iterator[bytes]:
        yield sse("message_start", {"type": "message_start", "message": {
            "id": "msg_fake01", "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1}}})
        yield sse("content_block_start", {"type": "content_block_start", "index": 0,
                                          "content_block": {"type": "text", "text": ""}})
        yield sse("ping", {"type": "ping"})
        for position, piece in enumerate(CONTENT):
            yield sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": piece}})
            if position == 0:
                if self.stream_error:
                    yield sse("error", error_document(529, self.stream_error))
                    return
                self.wait_at_gate()
        yield sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        stop_reason = self.stop_reason
        if self.tool_use:
            stop_reason = "tool_use"
            yield sse("content_block_start", {"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": self.tool_use["id"], "name": self.tool_use["name"], "input": {}}})
            arguments = json.dumps(self.tool_use["input"])
            for piece in (arguments[:5], arguments[5:]):
                yield sse("content_block_delta", {"type": "content_block_delta", "index": 1,
                                                  "delta": {"type": "input_json_delta", "partial_json": piece}})
            yield sse("content_block_stop", {"type": "content_block_stop", "index": 1})
        yield sse("message_delta", {"type": "message_delta", "delta": {"stop_reason": stop_reason,
                                                                       "stop_sequence": None},
                                    "usage": {"output_tokens": 6}})
        yield sse("message_stop", {"type": "message_stop"})
