"""Token counts and timings read off an answer on its way to the client, without parsing the whole of it.

An answer is compact JSON (the provider client writes it so): its `"usage":{…}` is found by a byte search
from the end and only that object is decoded. A stream is watched chunk by chunk: the first chunk's time is
the time to first byte, an event carrying `"usage":{…}` gives the counts, an error event its code. When the
gateway asked the provider for usage on the client's behalf, the usage-only event the client did not ask
for is held back, so the client sees the stream it asked for.
"""

import json
import re
import time

from .calls import Call

USAGE_KEY = re.compile(rb'"usage"\s*:\s*\{')
ERROR_EVENT = re.compile(rb'^data:\s*\{"error"\s*:', re.MULTILINE)
DECODER = json.JSONDecoder()


def note_answer(call: Call, answer: bytes) -> None:
    """The counts from a whole answer's top-level usage (the last `"usage":{`, or `"usage": {` as some
    providers write JSON)."""
    position = max(answer.rfind(b'"usage":{'), answer.rfind(b'"usage": {'))
    if position < 0:
        return
    try:
        usage, _ = DECODER.raw_decode(answer[answer.index(b"{", position):].decode("utf-8", "replace"))
    except ValueError:
        return
    call.note_tokens(usage)


class MeteredStream:
    """An event stream passed through as it is, noting the first chunk's time, usage and errors in `call`."""

    def __init__(self, events, call: Call, *, hide_usage_event: bool = False):
        self.events = events
        self.call = call
        self.hide_usage_event = hide_usage_event

    def __aiter__(self) -> "MeteredStream":
        return self

    async def __anext__(self) -> bytes:
        while True:
            chunk = await self.events.__anext__()
            call = self.call
            if call.ttfb_ms is None:
                call.ttfb_ms = int((time.perf_counter() - call.started) * 1000)
            if b'"usage"' in chunk and USAGE_KEY.search(chunk):
                chunk = self.take_usage(chunk)
                if not chunk:
                    continue
            if b'"error"' in chunk and ERROR_EVENT.search(chunk):
                self.take_error(chunk)
            return chunk

    def take_usage(self, chunk: bytes) -> bytes:
        """Note the usage of each event in the chunk that has one; the chunk without the events to hide."""
        events = chunk.split(b"\n\n")
        kept = []
        for event in events:
            if USAGE_KEY.search(event):
                document = event_json(event)
                if isinstance(document, dict):
                    self.call.note_tokens(document.get("usage"))
                    if self.hide_usage_event and document.get("choices") == []:
                        continue
            kept.append(event)
        return b"\n\n".join(kept)

    def take_error(self, chunk: bytes) -> None:
        for event in chunk.split(b"\n\n"):
            document = event_json(event)
            if isinstance(document, dict) and isinstance(document.get("error"), dict):
                self.call.error = str(document["error"].get("code") or document["error"].get("type") or "error")

    async def aclose(self) -> None:
        await self.events.aclose()


def event_json(event: bytes) -> object:
    """The JSON of an event's data lines, or None."""
    data = b"".join(line[5:].strip() for line in event.split(b"\n") if line.startswith(b"data:"))
    if not data or data == b"[DONE]":
        return None
    try:
        return json.loads(data)
    except ValueError:
        return None

