"""A fake Google Gemini API (and, in Vertex mode, the Gemini models of Vertex AI), with Google's error shapes.

Gemini mode: `/v1beta/models/<model>:generateContent`, `:streamGenerateContent?alt=sse`,
`:batchEmbedContents` and `GET /v1beta/models`, with the key in `x-goog-api-key`. A request carrying
`key=` in its URL is refused with 400, as a test failure would be: keys belong in headers.

Vertex mode: `/v1/projects/<project>/locations/<location>/publishers/google/models/<model>:generateContent`,
`:streamGenerateContent?alt=sse`, `:predict` (text embeddings) and `GET .../endpoints`, with
`Authorization: Bearer <access token>` checked by `token_valid` (the fake token service's judgement).
"""

import re
import threading
from collections import deque
from collections.abc import Callable, Iterator

from .server import FakeServer, RecordedRequest, Reply, ServedFake

GEMINI_MODEL = re.compile(r"/v1beta/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|batchEmbedContents)")
VERTEX_BASE = r"/v1/projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+)"
VERTEX_MODEL = re.compile(VERTEX_BASE + r"/publishers/google/models/(?P<model>[^/:]+):(?P<method>generateContent|streamGenerateContent|predict)")
VERTEX_ENDPOINTS = re.compile(VERTEX_BASE + r"/endpoints")
CONTENT = ["Hel", "lo", " from", " Gemini"]
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
USAGE = {"promptTokenCount": 7, "candidatesTokenCount": 4, "totalTokenCount": 11}


def google_error(status: int, message: str, reason: str | None = None) -> dict:
    """Google's error document: numeric code, message, canonical status, optional ErrorInfo reason."""
    error: dict = {"code": status, "message": message, "status": STATUS_NAMES.get(status, "UNKNOWN")}
    if reason:
        error["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason,
                             "domain": "googleapis.com",
                             "metadata": {"service": "generativelanguage.googleapis.com"}}]
    return {"error": error}


def invalid_key() -> Reply:
    """What Gemini answers a wrong or revoked API key: 400 with reason API_KEY_INVALID."""
    return Reply.json(google_error(400, "API key not valid. Please pass a valid API key.", "API_KEY_INVALID"), 400)


class FakeGemini(ServedFake):
    """One fake Google model API; `keys` are the API keys it accepts (Gemini mode)."""

    def __init__(self, keys: set[str] | tuple[str, ...] = (), *, vertex: bool = False,
                 token_valid: Callable[[str], bool] | None = None):
        self.keys = set(keys)
        self.vertex = vertex
        self.token_valid = token_valid or (lambda token: False)
        self.scripted: deque = deque()
        self.stream_gate: threading.Event | None = None  # a stream waits for it after its first chunk
        self.stream_error: dict | None = None  # when set, a stream sends this error event after its first chunk
        self.server = FakeServer(self.handle)

    def fail(self, status: int, message: str = "Something went wrong.", *, reason: str | None = None,
             headers: dict[str, str] | None = None, times: int = 1) -> None:
        """Answer the next `times` requests with Google's error shape; `{key}` in `message` echoes the credential."""
        for _ in range(times):
            self.scripted.append((status, message, reason, headers or {}))

    # --- Serving --------------------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        if "key" in request.query or "key=" in request.target:
            return Reply.json(google_error(400, "Test fake: an API key must never be sent in the URL."), 400)
        route = self.route(request)
        if route is None:
            return Reply.json(google_error(404, f"Unknown path {request.path}."), 404)
        if self.scripted:
            status, message, reason, headers = self.scripted.popleft()
            text = message.format(key=self.credential(request) or "")
            return Reply.json(google_error(status, text, reason), status, headers)
        refused = self.check_credentials(request)
        if refused:
            return refused
        kind, model = route
        if kind == "streamGenerateContent" and request.query.get("alt") != ["sse"]:
            return Reply.json(google_error(400, "This fake streams only with alt=sse."), 400)
        return self.answer(request, kind, model)

    def route(self, request: RecordedRequest) -> tuple[str, str] | None:
        path = request.path
        if self.vertex:
            match = VERTEX_MODEL.fullmatch(path)
            if match and request.method == "POST":
                return match["method"], match["model"]
            if VERTEX_ENDPOINTS.fullmatch(path) and request.method == "GET":
                return "endpoints", ""
            return None
        if path == "/v1beta/models" and request.method == "GET":
            return "models", ""
        match = GEMINI_MODEL.fullmatch(path)
        return (match["method"], match["model"]) if match and request.method == "POST" else None

    def credential(self, request: RecordedRequest) -> str | None:
        if self.vertex:
            authorization = request.headers.get("authorization", "")
            return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None
        return request.headers.get("x-goog-api-key")

    def check_credentials(self, request: RecordedRequest) -> Reply | None:
        credential = self.credential(request)
        if self.vertex:
            if credential is None or not self.token_valid(credential):
                message = ("Request had invalid authentication credentials. Expected OAuth 2 access token, login "
                           "cookie or other valid authentication credential.")
                return Reply.json(google_error(401, message), 401)
            return None
        if credential is None:
            message = "Method doesn't allow unregistered callers (callers without established identity)."
            return Reply.json(google_error(403, message), 403)
        return None if credential in self.keys else invalid_key()

    def answer(self, request: RecordedRequest, kind: str, model: str) -> Reply:
        body = request.json() if request.body else {}
        if kind == "models":
            return Reply.json({"models": [{"name": "models/gemini-2.0-flash", "displayName": "Gemini 2.0 Flash"}],
                               "nextPageToken": "next"})
        if kind == "endpoints":
            return Reply.json({"endpoints": []})
        if kind == "batchEmbedContents":
            return Reply.json({"embeddings": [{"values": [0.5, float(i), -1.0]} for i in range(len(body["requests"]))]})
        if kind == "predict":
            return Reply.json({"predictions": [
                {"embeddings": {"values": [0.25, float(i)], "statistics": {"token_count": 2, "truncated": False}}}
                for i in range(len(body["instances"]))
            ]})
        if kind == "streamGenerateContent":
            return Reply(200, {"Content-Type": "text/event-stream"}, chunks=self.stream_events(model))
        return Reply.json(response_document(model, "".join(CONTENT), "STOP", USAGE))

    def stream_events(self, model: str) -> Iterator[bytes]:
        last = len(CONTENT) - 1
        for position, piece in enumerate(CONTENT):
            document = response_document(model, piece, "STOP" if position == last else None,
                                         USAGE if position == last else None)
            yield b"data: " + Reply.json(document).body + b"\r\n\r\n"  # Google separates events with CRLF
            if position == 0 and self.stream_gate is not None:
                self.stream_gate.wait(10)
            if position == 0 and self.stream_error is not None:
                yield b"data: " + Reply.json(self.stream_error).body + b"\r\n\r\n"
                return


def response_document(model: str, text: str, finish_reason: str | None, usage: dict | None) -> dict:
    candidate: dict = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish_reason:
        candidate["finishReason"] = finish_reason
    document: dict = {"candidates": [candidate], "modelVersion": model, "responseId": "fake-response-1"}
    if usage:
        document["usageMetadata"] = usage
    return document
