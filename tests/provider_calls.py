"""Calling the asyncio provider client from synchronous tests.

Each test gets an event loop of its own in a thread (`provider_loop`, an autouse fixture in
tests/provider_fixtures.py): `run(coroutine)` runs one there and waits, and a stream comes back as a
SyncStream, read chunk by chunk from the test while the loop relays it (so a test can read the first chunk
while the provider still holds back the rest). The loop's provider connections close when the test ends.
"""

import asyncio
import threading
from collections.abc import Coroutine

from providers import upstream
from providers.adapters.base import EventStream


class LoopThread:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="test-provider-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine, timeout: float = 60):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.run(upstream.close_sessions(), timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


class SyncStream:
    """An EventStream read from the test's thread: iterate it for its chunks; close() lets the provider go."""

    def __init__(self, loop: LoopThread, stream: EventStream):
        self.loop_thread = loop
        self.stream = stream
        self.response = stream.response

    def __iter__(self) -> "SyncStream":
        return self

    def __next__(self) -> bytes:
        try:
            return self.loop_thread.run(self.stream.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def close(self) -> None:
        self.loop_thread.run(self.stream.aclose())


_current: list[LoopThread] = []


def start() -> LoopThread:
    loop = LoopThread()
    _current.append(loop)
    return loop


def stop(loop: LoopThread) -> None:
    _current.remove(loop)
    loop.close()


def run(coroutine: Coroutine):
    """Run a coroutine of the provider client on this test's loop; a stream comes back as a SyncStream."""
    loop = _current[-1]
    result = loop.run(coroutine)
    return SyncStream(loop, result) if isinstance(result, EventStream) else result


async def gather(*coroutines: Coroutine) -> list:
    """The coroutines run at once on the test's loop; their results in order."""
    return list(await asyncio.gather(*coroutines))
