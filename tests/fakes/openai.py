"""A fake OpenAI (and Azure OpenAI) API: chat, embeddings, models, SSE streaming, auth checks, scripted failures.

OpenAI shape: `/v1/chat/completions`, `/v1/embeddings`, `/v1/models` with `Authorization: Bearer <key>`.
Azure shape: `/openai/deployments/<deployment>/chat/completions|embeddings` and `/openai/models`, with
`?api-version=` and an `api-key` header, or `Authorization: Bearer <token>` with a token from `authority`
(a fake Entra ID, for Azure with Entra ID). A request without an accepted key gets 401 in OpenAI's error shape.

Run `python -m tests.fakes.openai` to serve one standalone (benchmarks); it prints its URL.
"""

import base64
import json
import re
import threading
import time
from collections import deque
from collections.abc import Iterator
from urllib.parse import quote

from .server import FakeServer, RecordedRequest, Reply, ServedFake

AZURE_PATH = re.compile(r"/openai/deployments/(?P<deployment>[^/]+)/(?P<kind>chat/completions|embeddings)")
OPENAI_PATHS = {"/v1/chat/completions": "chat/completions", "/v1/embeddings": "embeddings", "/v1/models": "models",
                "/v1/responses": "responses"}
AZURE_V1_PATHS = {"/openai/v1/responses": "responses"}  # Azure's v1 API: no api-version, the deployment in `model`
ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
               422: "invalid_request_error", 429: "requests", 500: "server_error", 503: "server_error"}
CONTENT = ["Hel", "lo", " from", " the", " fake"]


def error_document(status: int, message: str, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": ERROR_TYPES.get(status, "api_error"), "param": None, "code": code}}


class FakeOpenAI(ServedFake):
    """One fake provider; `keys` are the credentials it accepts (tests add a rotated key to it)."""

    def __init__(self, keys: set[str] | tuple[str, ...] = (), *, require_auth: bool = True, listen: bool = True):
        self.keys = set(keys)
        self.require_auth = require_auth
        self.authority = None  # a FakeEntraID whose tokens Azure paths accept as Bearer
        self.scripted: deque = deque()
        # When set, a stream waits for this event after its first content chunk (proves chunks pass through).
        self.stream_gate: threading.Event | None = None
        self.stream_done = True  # False: end a stream without `data: [DONE]`, like some compatible servers
        self.server = FakeServer(self.handle, listen=listen)

    # --- Addresses and records ------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """An OpenAI-style base_url for connections."""
        return f"{self.server.url}/v1"

    def presented_keys(self) -> list[str | None]:
        """The credential each request carried, in order."""
        return [presented_key(request) for request in self.requests]

    def listen(self) -> None:
        self.server.listen()

    # --- Scripting ------------------------------------------------------------------------------------

    def fail(self, status: int, message: str = "Something went wrong.", *, code: str | None = None,
             headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Answer the next `times` requests with an error in OpenAI's shape.

        `message` may contain `{key}`, `{key_url}`, `{key_b64}` and `{auth}`: the presented key as is,
        URL-encoded, base64'd, and the whole Authorization header, for providers that echo them.
        """
        for _ in range(times):
            self.scripted.append(("fail", status, message, code, headers or {}))

    def fail_with_body(self, status: int, body: str, *, headers: dict[str, str] | None = None) -> None:
        """Answer the next request with a raw (possibly non-JSON) body; placeholders as in `fail`."""
        self.scripted.append(("raw", status, body, None, headers or {}))

    def hang(self, seconds: float, times: int = 1) -> None:
        """Answer the next `times` requests only after `seconds` (a provider that does not answer)."""
        for _ in range(times):
            self.scripted.append(("hang", seconds))

    # --- Serving --------------------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        route = self.route(request)
        if route is None:
            return Reply.json(error_document(404, f"Unknown path {request.path}.", "unknown_url"), 404)
        flavour, kind, deployment = route
        if self.scripted:
            step = self.scripted.popleft()
            if step[0] == "hang":
                return self.answer(request, flavour, kind, deployment, delay=step[1])
            return self.scripted_failure(request, *step)
        key = presented_key(request)
        if self.require_auth and not self.accepts(request, flavour, key):
            return Reply.json(error_document(401, incorrect_key_message(key), "invalid_api_key"), 401)
        if flavour == "azure-v1":
            flavour = "azure"
        elif flavour == "azure" and not request.query.get("api-version"):
            return Reply.json(error_document(404, "Resource not found: api-version is missing.", "404"), 404)
        return self.answer(request, flavour, kind, deployment)

    def accepts(self, request: RecordedRequest, flavour: str, key: str | None) -> bool:
        """A key it was given; on Azure paths also an Entra ID token as Bearer (never as api-key)."""
        if key in self.keys:
            return True
        bearer = "api-key" not in request.headers and request.headers.get("authorization", "").startswith("Bearer ")
        return flavour == "azure" and bearer and self.authority is not None and self.authority.accepts(key)

    @staticmethod
    def route(request: RecordedRequest) -> tuple[str, str, str] | None:
        path = request.path
        if path in OPENAI_PATHS:
            return "openai", OPENAI_PATHS[path], ""
        if path == "/openai/models":
            return "azure", "models", ""
        if path in AZURE_V1_PATHS:
            return "azure-v1", AZURE_V1_PATHS[path], ""
        match = AZURE_PATH.fullmatch(path)
        if match:
            return "azure", match["kind"], match["deployment"]
        return None

    def scripted_failure(self, request: RecordedRequest, kind: str, status: int, message: str,
                         code: str | None, headers: dict[str, str]) -> Reply:
        key = presented_key(request) or ""
        text = message.format(
            key=key,
            key_url=quote(key, safe=""),
            key_b64=base64.b64encode(f"user:{key}".encode()).decode(),
            auth=request.headers.get("authorization", ""),
        )
        if kind == "raw":
            return Reply(status, {"Content-Type": "text/plain", **headers}, text.encode())
        return Reply.json(error_document(status, text, code), status, headers)

    def answer(self, request: RecordedRequest, flavour: str, kind: str, deployment: str, delay: float = 0) -> Reply:
        body = request.json() if request.body else {}
        model = deployment or body.get("model", "")
        if kind == "models":
            reply = Reply.json({"object": "list", "data": [
                {"id": "gpt-4o-mini", "object": "model", "created": 1700000000, "owned_by": "fake"},
                {"id": "text-embedding-3-small", "object": "model", "created": 1700000000, "owned_by": "fake"},
            ]})
        elif kind == "embeddings":
            inputs = body.get("input")
            inputs = inputs if isinstance(inputs, list) else [inputs]
            reply = Reply.json({
                "object": "list",
                "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, float(i)]}
                         for i in range(len(inputs))],
                "model": model,
                "usage": {"prompt_tokens": len(inputs), "total_tokens": len(inputs)},
            })
        elif kind == "responses" and body.get("stream"):
            reply = Reply(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                          chunks=self.response_events(model))
        elif kind == "responses":
            reply = Reply.json(response_document(model, "".join(CONTENT)))
        elif body.get("stream"):
            reply = Reply(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"},
                          chunks=self.stream_events(model, usage=stream_usage_asked(body)))
        else:
            reply = Reply.json(chat_completion(model))
        reply.delay = delay
        return reply

    def stream_events(self, model: str, usage: bool = False) -> Iterator[bytes]:
        yield sse(chunk_document(model, {"role": "assistant", "content": ""}))
        for position, piece in enumerate(CONTENT):
            yield sse(chunk_document(model, {"content": piece}))
            if position == 0 and self.stream_gate is not None:
                self.stream_gate.wait(10)
        yield sse(chunk_document(model, {}, finish_reason="stop"))
        if usage:  # as OpenAI does with stream_options.include_usage: a last chunk without choices
            yield sse({**chunk_document(model, {}), "choices": [], "usage": STREAM_USAGE})
        if self.stream_done:
            yield b"data: [DONE]\n\n"


    def response_events(self, model: str) -> Iterator[bytes]:
        """The Responses API's stream: named events, each with its sequence number; no [DONE]."""
        events = [("response.created", {"response": response_document(model, "", status="in_progress")}),
                  ("response.output_item.added", {"output_index": 0, "item": message_item("", "in_progress")}),
                  ("response.content_part.added", {"item_id": "msg_fake", "output_index": 0, "content_index": 0,
                                                   "part": {"type": "output_text", "text": "", "annotations": []}})]
        events += [("response.output_text.delta", {"item_id": "msg_fake", "output_index": 0, "content_index": 0,
                                                   "delta": piece, "logprobs": []}) for piece in CONTENT]
        text = "".join(CONTENT)
        events += [
            ("response.output_text.done", {"item_id": "msg_fake", "output_index": 0, "content_index": 0,
                                           "text": text, "logprobs": []}),
            ("response.content_part.done", {"item_id": "msg_fake", "output_index": 0, "content_index": 0,
                                            "part": {"type": "output_text", "text": text, "annotations": []}}),
            ("response.output_item.done", {"output_index": 0, "item": message_item(text, "completed")}),
            ("response.completed", {"response": response_document(model, text)}),
        ]
        for number, (name, document) in enumerate(events):
            yield f"event: {name}\ndata: {json.dumps({'type': name, 'sequence_number': number, **document})}\n\n".encode()
            if name == "response.output_text.delta" and number == 3 and self.stream_gate is not None:
                self.stream_gate.wait(10)


STREAM_USAGE = {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def stream_usage_asked(body: dict) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def message_item(text: str, status: str) -> dict:
    content = [{"type": "output_text", "text": text, "annotations": []}] if text else []
    return {"id": "msg_fake", "type": "message", "status": status, "role": "assistant", "content": content}


def response_document(model: str, text: str, status: str = "completed") -> dict:
    """A Responses API `response` object as OpenAI answers it."""
    return {
        "id": "resp_fake01", "object": "response", "created_at": 1700000000, "status": status, "model": model,
        "output": [message_item(text, status)] if text else [], "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "error": None, "incomplete_details": None, "instructions": None, "metadata": {},
        "temperature": 1.0, "top_p": 1.0,
        "usage": {"input_tokens": 9, "input_tokens_details": {"cached_tokens": 0}, "output_tokens": 5,
                  "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14} if text else None,
    }


def presented_key(request: RecordedRequest) -> str | None:
    """The key a request carries: `api-key` (Azure) or `Authorization: Bearer` (everyone else)."""
    if "api-key" in request.headers:
        return request.headers["api-key"]
    authorization = request.headers.get("authorization", "")
    return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None


def incorrect_key_message(key: str | None) -> str:
    if not key:
        return "You didn't provide an API key."
    # OpenAI's own wording, which echoes part of the key.
    return (f"Incorrect API key provided: {key[:3]}*****{key[-4:]}. You can find your API key at "
            "https://platform.openai.com/account/api-keys.")


def chat_completion(model: str) -> dict:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(CONTENT)},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10},
    }


def chunk_document(model: str, delta: dict, finish_reason: str | None = None) -> dict:
    return {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def sse(document: dict) -> bytes:
    return b"data: " + json.dumps(document).encode() + b"\n\n"


def main() -> None:
    """Serve a fake that accepts any key until interrupted (for bench scripts)."""
    fake = FakeOpenAI(require_auth=False)
    print(fake.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        fake.stop()


if __name__ == "__main__":
    main()
