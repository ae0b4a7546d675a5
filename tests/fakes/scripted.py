"""What every fake provider shares: accepted keys, scripted failures, a stream gate, recorded requests.

A subclass says where the credential is (`presented_key`), how the provider words errors (`error_reply`)
and how it answers (`answer`); failures scripted with `fail` are answered in the provider's own shape.
"""

import threading
from collections import deque

from .server import FakeServer, RecordedRequest, Reply, ServedFake


class ScriptedFake(ServedFake):
    """A fake provider on 127.0.0.1; `keys` are the credentials it accepts (tests add or remove them)."""

    label = "Fake"

    def __init__(self, keys: set[str] | tuple[str, ...] = (), *, listen: bool = True):
        self.keys = set(keys)
        self.scripted: deque = deque()
        # When set, a stream waits for this event after its first content event (proves events are relayed).
        self.stream_gate: threading.Event | None = None
        self.server = FakeServer(self.handle, listen=listen)

    def presented_keys(self) -> list[str | None]:
        return [self.presented_key(request) for request in self.requests]

    # --- Scripting ------------------------------------------------------------------------------------

    def fail(self, status: int, message: str = "Something went wrong.", *, headers: dict[str, str] | None = None,
             times: int = 1) -> None:
        """Answer the next `times` requests with an error in the provider's shape; `{key}` is the presented key."""
        for _ in range(times):
            self.scripted.append((status, message, headers or {}))

    # --- Serving --------------------------------------------------------------------------------------

    def handle(self, request: RecordedRequest) -> Reply:
        if self.scripted:
            status, message, headers = self.scripted.popleft()
            reply = self.error_reply(status, message.format(key=self.presented_key(request) or ""))
            reply.headers.update(headers)
            return reply
        if self.presented_key(request) not in self.keys:
            return self.unauthorized(request)
        return self.answer(request)

    def wait_at_gate(self) -> None:
        if self.stream_gate is not None:
            self.stream_gate.wait(10)

    # --- The provider's own shapes (subclasses) -------------------------------------------------------

    def presented_key(self, request: RecordedRequest) -> str | None:
        raise NotImplementedError

    def error_reply(self, status: int, message: str) -> Reply:
        raise NotImplementedError

    def unauthorized(self, request: RecordedRequest) -> Reply:
        return self.error_reply(401, "invalid credentials")

    def answer(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError


def bearer_key(request: RecordedRequest) -> str | None:
    authorization = request.headers.get("authorization", "")
    return authorization.removeprefix("Bearer ") if authorization.startswith("Bearer ") else None


def event_stream(events) -> Reply:
    return Reply(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, chunks=events)
