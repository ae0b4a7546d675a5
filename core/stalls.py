"""A watch on a stream's waits (a read from the provider, a write to the client) that acts once one wait
has lasted too long.

One timer a stream, which looks at the wait in progress when it fires, instead of a timer armed and
cancelled around every read or write (a timer per chunk, as `wait_for` or aiohttp's `sock_read` make, was a
good part of relaying one). A wait that began at `since` is stopped at `since + seconds`: the timer, armed
`seconds` after a moment nothing was waiting, never fires later than that.
"""

import asyncio
from collections.abc import Callable


class StallWatch:
    """Calls `on_stall()` once a wait (from `since` being set until it is set back to None) lasts `seconds`."""

    __slots__ = ("loop", "seconds", "on_stall", "since", "timer")

    def __init__(self, loop: asyncio.AbstractEventLoop, seconds: float, on_stall: Callable[[], object]):
        self.loop, self.seconds, self.on_stall = loop, seconds, on_stall
        self.since: float | None = None  # when the wait in progress began; None between waits
        self.timer = loop.call_later(seconds, self.look)

    def look(self) -> None:
        now = self.loop.time()
        if self.since is None:
            self.timer = self.loop.call_at(now + self.seconds, self.look)
        elif now - self.since >= self.seconds:
            self.on_stall()
        else:
            self.timer = self.loop.call_at(self.since + self.seconds, self.look)

    def stop(self) -> None:
        self.timer.cancel()
