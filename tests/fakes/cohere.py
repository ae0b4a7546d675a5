"""A fake Cohere API: `/v2/chat` (JSON and SSE), `/v2/embed`, `/v1/models`, Bearer checks, Cohere's errors.

Errors come in Cohere's shape `{"id": ..., "message": ...}`; a request without an accepted key gets 401.
"""

import json
from collections.abc import Iterator

from .scripted import ScriptedFake, bearer_key, event_stream
from .server import RecordedRequest, Reply

CONTENT = ["Hel", "lo", " from", " Command"]


def sse(document: dict) -> bytes:
    return f"event: {document['type']}\ndata: {json.dumps(document)}\n\n".encode()


class FakeCohere(ScriptedFake):
    label = "Cohere"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.finish_reason = "COMPLETE"
        self.usage_key = "tokens"  # or "billed_units": where the answer carries its token counts
        self.tool_call: dict | None = None  # {"id", "name", "arguments"}: answer with a tool call

    def presented_key(self, request: RecordedRequest) -> str | None:
        return bearer_key(request)

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply.json({"id": "2f3c8e1a-fake", "message": message}, status)

    def unauthorized(self, request: RecordedRequest) -> Reply:
        return self.error_reply(401, "invalid api token")

    def answer(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == "/v1/models":
            return Reply.json({"models": [{"name": "command-r-plus", "endpoints": ["chat"]}],
                               "next_page_token": "page-2"})
        if request.method == "POST" and request.path == "/v2/embed":
            return self.embed(request.json())
        if request.method != "POST" or request.path != "/v2/chat":
            return self.error_reply(404, f"Not found: {request.path}")
        body = request.json()
        if any(message.get("role") not in ("system", "user", "assistant", "tool") for message in body["messages"]):
            return self.error_reply(400, "invalid role in messages")
        if body.get("stream"):
            return event_stream(self.events())
        message: dict = {"role": "assistant", "content": [{"type": "text", "text": "".join(CONTENT)}]}
        if self.tool_call:
            message["tool_plan"] = "I will call the tool."
            message["tool_calls"] = [{"id": self.tool_call["id"], "type": "function", "function": {
                "name": self.tool_call["name"], "arguments": self.tool_call["arguments"]}}]
        counts = {"input_tokens": 9, "output_tokens": 4}
        reason = "TOOL_CALL" if self.tool_call else self.finish_reason
        return Reply.json({"id": "c14c80c3-fake", "finish_reason": reason,
                           "message": message, "usage": {self.usage_key: counts}})

    def embed(self, body: dict) -> Reply:
        if body.get("embedding_types") != ["float"] or not body.get("input_type"):
            return self.error_reply(400, "embedding_types and input_type are required")
        texts = body["texts"]
        return Reply.json({"id": "e1-fake", "texts": texts,
                           "embeddings": {"float": [[0.5, 0.25, float(i)] for i in range(len(texts))]},
                           "meta": {"api_version": {"version": "2"}, "billed_units": {"input_tokens": 3 * len(texts)}}})

    def events(self) -> Iterator[bytes]:
        yield sse({"id": "c14c80c3-fake", "type": "message-start",
                   "delta": {"message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": []}}})
        yield sse({"type": "content-start", "index": 0,
                   "delta": {"message": {"content": {"type": "text", "text": ""}}}})
        for position, piece in enumerate(CONTENT):
            yield sse({"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": piece}}}})
            if position == 0:
                self.wait_at_gate()
        yield sse({"type": "content-end", "index": 0})
        if self.tool_call:
            yield sse({"type": "tool-call-start", "index": 0, "delta": {"message": {"tool_calls": {
                "id": self.tool_call["id"], "type": "function",
                "function": {"name": self.tool_call["name"], "arguments": ""}}}}})
            arguments = self.tool_call["arguments"]
            for piece in (arguments[:4], arguments[4:]):
                yield sse({"type": "tool-call-delta", "index": 0,
                           "delta": {"message": {"tool_calls": {"function": {"arguments": piece}}}}})
            yield sse({"type": "tool-call-end", "index": 0})
        yield sse({"type": "message-end", "delta": {
            "finish_reason": "TOOL_CALL" if self.tool_call else self.finish_reason,
            "usage": {"billed_units": {"input_tokens": 9, "output_tokens": 4},
                      "tokens": {"input_tokens": 70, "output_tokens": 4}}}})
