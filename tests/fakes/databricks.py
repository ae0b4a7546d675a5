"""A fake Databricks workspace: OIDC token endpoint, Model Serving invocations (OpenAI shapes), endpoint list.

`/oidc/v1/token` checks HTTP Basic client credentials and the form fields, and counts the tokens it issues;
serving routes accept a personal access token in `keys` or any issued, unrevoked OAuth token. Errors come
in Databricks' shape `{"error_code", "message"}` (the token endpoint in OAuth's `{"error", "error_description"}`).
"""

import base64
import itertools
import json
import re
import time
from collections import deque
from collections.abc import Iterator
from urllib.parse import parse_qs, unquote

from .scripted import ScriptedFake, bearer_key, event_stream
from .server import RecordedRequest, Reply

INVOCATIONS = re.compile(r"/serving-endpoints/(?P<name>[^/]+)/invocations")
ERROR_CODES = {400: "INVALID_PARAMETER_VALUE", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED",
               404: "RESOURCE_DOES_NOT_EXIST", 429: "REQUEST_LIMIT_EXCEEDED", 500: "INTERNAL_ERROR",
               503: "TEMPORARILY_UNAVAILABLE"}
CONTENT = ["Hel", "lo", " from", " DBRX"]


class FakeDatabricks(ScriptedFake):
    label = "Databricks"

    def __init__(self, keys=(), *, clients: dict[str, str] | None = None, **kwargs):
        super().__init__(keys, **kwargs)
        self.clients = dict(clients or {})  # client_id -> client_secret of service principals
        self.issued: list[str] = []  # every OAuth token issued, in order
        self.revoked: set[str] = set()
        self.expires_in = 3600
        self.token_script: deque = deque()  # scripted token endpoint answers: (status, body)
        self.token_delay = 0.0
        self._serial = itertools.count(1)

    # --- Credentials ----------------------------------------------------------------------------------

    def presented_key(self, request: RecordedRequest) -> str | None:
        return bearer_key(request)

    def accepted(self, key: str | None) -> bool:
        return key in self.keys or (key in self.issued and key not in self.revoked)

    def handle(self, request: RecordedRequest) -> Reply:
        if request.path == "/oidc/v1/token":
            return self.token(request)
        if self.scripted:
            return super().handle(request)
        if not self.accepted(self.presented_key(request)):
            return self.unauthorized(request)
        return self.answer(request)

    def fail_token(self, status: int, body: dict | None = None, *, headers: dict[str, str] | None = None) -> None:
        """Answer the next token request with `status` (in OAuth's error shape unless `body` is given)."""
        self.token_script.append((status, body or {"error": "server_error", "error_description": "try later"},
                                  headers or {}))

    def token_requests(self) -> list[RecordedRequest]:
        return [request for request in self.requests if request.path == "/oidc/v1/token"]

    def token(self, request: RecordedRequest) -> Reply:
        if self.token_script:
            status, body, headers = self.token_script.popleft()
            return Reply.json(body, status, headers)
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        try:
            client_id, _, secret = base64.b64decode(encoded).decode().partition(":")
        except ValueError:
            client_id, secret = "", ""
        if request.method != "POST" or scheme != "Basic" or self.clients.get(client_id) != secret:
            return Reply.json({"error": "invalid_client", "error_description": "Client authentication failed"}, 401)
        form = parse_qs(request.body.decode())
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return Reply.json({"error": "invalid_request", "error_description": "form body expected"}, 400)
        if form != {"grant_type": ["client_credentials"], "scope": ["all-apis"]}:
            return Reply.json({"error": "invalid_request", "error_description": f"bad form {form}"}, 400)
        value = f"eyJhbGciOiJSUzI1NiJ9.fake-{next(self._serial)}.sig{time.time_ns()}"
        self.issued.append(value)
        reply = Reply.json({"access_token": value, "token_type": "Bearer", "scope": "all-apis",
                            "expires_in": self.expires_in})
        reply.delay = self.token_delay  # widens the window in which concurrent callers could each ask
        return reply

    # --- Serving --------------------------------------------------------------------------------------

    def error_reply(self, status: int, message: str) -> Reply:
        return Reply.json({"error_code": ERROR_CODES.get(status, "UNKNOWN"), "message": message}, status)

    def unauthorized(self, request: RecordedRequest) -> Reply:
        return self.error_reply(401, "Invalid access token.")

    def answer(self, request: RecordedRequest) -> Reply:
        if request.method == "GET" and request.path == "/api/2.0/serving-endpoints":
            return Reply.json({"endpoints": [{"name": "databricks-meta-llama-3-3-70b-instruct",
                                              "state": {"ready": "READY"}}]})
        match = INVOCATIONS.fullmatch(request.path)
        if request.method != "POST" or match is None:
            return self.error_reply(404, f"Not found: {request.path}")
        name = unquote(match["name"])
        body = request.json()
        if "model" in body:
            return self.error_reply(400, "'model' is not a valid parameter for this endpoint")
        if "input" in body:
            inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
            return Reply.json({"object": "list", "model": name, "usage": {"prompt_tokens": 2, "total_tokens": 2},
                               "data": [{"object": "embedding", "index": i, "embedding": [0.3, float(i)]}
                                        for i in range(len(inputs))]})
        if body.get("stream"):
            return event_stream(self.events(name))
        return Reply.json({"id": "chatcmpl-dbx", "object": "chat.completion", "created": 1700000000, "model": name,
                           "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(CONTENT)},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}})

    def events(self, name: str) -> Iterator[bytes]:
        """OpenAI chunks, without a final `[DONE]`, as Databricks endpoints may end them."""
        for position, piece in enumerate(CONTENT):
            document = {"id": "chatcmpl-dbx", "object": "chat.completion.chunk", "created": 1700000000,
                        "model": name, "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
            yield b"data: " + json.dumps(document).encode() + b"\n\n"
            if position == 0:
                self.wait_at_gate()
        yield b'data: {"id": "chatcmpl-dbx", "object": "chat.completion.chunk", "created": 1700000000, ' \
              b'"model": "x", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}\n\n'
