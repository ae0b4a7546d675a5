"""A fake provider that answers every request with one fixture case's upstream answer (tests/fixtures/providers).

Whatever the path, it records the request and answers as the case says: a JSON body (errors included, with
the case's headers), server-sent events written the way the provider writes them, or AWS event-stream frames
for Bedrock's ConverseStream. Credentials are not checked: the corpus is about shapes; the adapters' own
tests check addresses and credentials against the fuller fakes beside this one.
"""

import json
from collections.abc import Iterator

from tests.fixtures.providers.corpus import Case

from .bedrock import event, exception_event
from .server import FakeServer, RecordedRequest, Reply, ServedFake


def sse_events(provider: str, events: list) -> Iterator[bytes]:
    for item in events:
        if provider in ("anthropic", "cohere"):
            yield f"event: {item['event']}\ndata: {json.dumps(item['data'])}\n\n".encode()
        elif provider == "gemini":
            yield b"data: " + json.dumps(item).encode() + b"\r\n\r\n"  # Google separates events with CRLF
        else:
            yield b"data: " + (item.encode() if isinstance(item, str) else json.dumps(item).encode()) + b"\n\n"


def event_stream_frames(events: list) -> Iterator[bytes]:
    for item in events:
        if "exception_type" in item:
            yield exception_event(item["exception_type"], item["payload"]["message"])
        else:
            yield event(item["event_type"], item["payload"])


def reply_for(case: Case) -> Reply:
    upstream = case.upstream
    headers = {"Content-Type": upstream["content_type"], **(upstream.get("headers") or {})}
    if "events" not in upstream:
        return Reply(upstream["status"], headers, json.dumps(upstream["body"]).encode())
    if case.provider == "bedrock":
        return Reply(upstream["status"], headers, chunks=event_stream_frames(upstream["events"]))
    return Reply(upstream["status"], headers, chunks=sse_events(case.provider, upstream["events"]))


class CorpusFake(ServedFake):
    """Serves the case set with `answer_with(case)`; a request before any case gets a 500."""

    def __init__(self):
        self.case: Case | None = None
        self.server = FakeServer(self.handle)

    def answer_with(self, case: Case) -> None:
        self.case = case

    def handle(self, request: RecordedRequest) -> Reply:
        if self.case is None or self.case.upstream is None:
            return Reply.json({"error": {"message": "this case expects no provider call"}}, 500)
        return reply_for(self.case)
