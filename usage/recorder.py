"""Every gateway call noted in memory on its way out and written in batches by a thread of the process's own.

The call never waits for the database: `record()` appends to a bounded buffer (no lock, no I/O), and a
writer thread writes what is there every USAGE_FLUSH_SECONDS, or as soon as USAGE_FLUSH_CALLS are waiting.
At shutdown (the server's lifespan, or the interpreter's exit) what is left is written before the process
ends; a crash (SIGKILL, power loss) loses what was waiting, at most about one flush interval of calls. While
the database cannot be written to, calls wait in the buffer; past USAGE_BUFFER_CALLS the newest are dropped
and counted (logged, and `llmc_usage_dropped_total` in /metrics), so memory stays bounded.
"""

import atexit
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from django.conf import settings
from django.db import DatabaseError, close_old_connections

from . import metrics, services
from .calls import CLIENT_GONE, Call, begin, current

__all__ = ["CLIENT_GONE", "Call", "RECORDER", "begin", "current", "finish"]
PURGE_EVERY_SECONDS = 3600

logger = logging.getLogger("usage")


def finish(call: Call) -> None:
    """The call is over (answered, streamed, or its client gone): note its latency and hand it to the writer."""
    call.latency_ms = int((time.perf_counter() - call.started) * 1000)
    RECORDER.record(call)


class Recorder:
    """The process's buffer of calls and the thread that writes them (`write` does the database part)."""

    def __init__(self, write: Callable[[list[Call], int], None], observe: Callable[[list[Call], int], None]):
        self.write = write
        self.observe = observe
        self.buffer: deque[Call] = deque()
        # Only the event loop adds to `dropped`, only the writer to `dropped_reported`: no lock needed.
        self.dropped = 0
        self.dropped_reported = 0
        self.flush_lock = threading.Lock()
        self.wake = threading.Event()
        self.thread: threading.Thread | None = None
        self.stopping = False
        self.pid = os.getpid()
        self.next_purge = 0.0

    # --- The call's side: no lock, no I/O ---------------------------------------------------------------

    def record(self, call: Call) -> None:
        if len(self.buffer) >= settings.USAGE_BUFFER_CALLS:
            self.dropped += 1
            return
        self.buffer.append(call)
        if self.thread is None or self.pid != os.getpid():
            self.start()
        if len(self.buffer) >= settings.USAGE_FLUSH_CALLS:
            self.wake.set()

    # --- The writer's side ------------------------------------------------------------------------------

    def start(self) -> None:
        """The writer thread (again in a forked child, whose parent's thread did not come along)."""
        if self.pid != os.getpid():
            self.pid, self.thread, self.flush_lock = os.getpid(), None, threading.Lock()
        if self.thread is not None or not settings.USAGE_WRITER_THREAD:
            return
        self.stopping = False
        self.thread = threading.Thread(target=self.run, name="usage-writer", daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping:
            self.wake.wait(settings.USAGE_FLUSH_SECONDS)
            self.wake.clear()
            try:
                self.flush()
                if time.monotonic() >= self.next_purge:
                    self.next_purge = time.monotonic() + PURGE_EVERY_SECONDS
                    purge_old_usage()
            except DatabaseError as error:
                logger.warning("Usage: could not purge old usage (%s).", type(error).__name__)
            finally:
                close_old_connections()  # back to the pool between batches

    def flush(self) -> int:
        """Write every call waiting now, in batches; on a database error they stay for the next try."""
        written = 0
        with self.flush_lock:
            while self.buffer:
                batch = [self.buffer.popleft() for _ in range(min(len(self.buffer), settings.USAGE_FLUSH_CALLS))]
                dropped = self.dropped - self.dropped_reported
                self.dropped_reported += dropped
                fresh = [call for call in batch if not call.observed]
                if fresh or dropped:
                    self.observe(fresh, dropped)
                    for call in fresh:
                        call.observed = True
                if dropped:
                    logger.warning("Usage: %d calls were not recorded (the buffer was full).", dropped)
                try:
                    self.write(batch, dropped)
                except DatabaseError as error:
                    self.buffer.extendleft(reversed(batch))
                    logger.warning("Usage: %d calls wait to be written (%s).", len(self.buffer), type(error).__name__)
                    break
                written += len(batch)
        return written

    def stop(self) -> None:
        """At shutdown: stop the thread and write what is left, here and now."""
        self.stopping = True
        thread, self.thread = self.thread, None
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            self.wake.set()
            thread.join(10)
        if self.buffer:
            self.flush()  # on the caller's thread and connection (the process is ending)


def write_calls(calls: list[Call], dropped: int) -> None:
    services.write_calls(calls)


def purge_old_usage() -> None:
    services.purge()


RECORDER = Recorder(write_calls, metrics.observe)
atexit.register(RECORDER.stop)
