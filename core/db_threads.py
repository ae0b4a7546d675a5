"""Database work for code that runs on the event loop (the gateway, /healthz): a few threads of its own.

Django's database layer is synchronous, and a connection belongs to a thread. Code on the event loop hands
its queries to a small pool of threads instead, so the number of database connections does not grow with
the number of calls in flight, and a stream never holds one while it streams. After each piece of work the
thread gives its connection back as the settings say: to PostgreSQL's pool (CONN_MAX_AGE 0), or kept open
for the next piece of work (SQLite, CONN_MAX_AGE above 0).

A pool may hold the loop while its work runs (`hold_loop_seconds`): the loop thread waits on the work with
the GIL released, so the database thread runs at once and the loop goes on the moment it ends. Awaited
instead, the thread has to win the GIL from a loop busy with other calls, and the loop has to come round
to the result: with a few calls in flight per process, that waiting, not the query, was most of a call's
database time (docs/benchmarks.md). With many in flight the loop has other calls to serve meanwhile, so a
pool holds only while `hold_while()` says so. The hold is bounded: past it the work is awaited as usual, and the
pool stops holding for a second, so a slow database never stalls the loop call after call.

An in-process caller that holds a transaction and waits for the loop (the test client) runs this work on
its own thread instead, where its transaction lives: `on_callers_thread()` says so.
"""

import asyncio
import contextvars
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

T = TypeVar("T")

_ON_CALLERS_THREAD: contextvars.ContextVar[bool] = contextvars.ContextVar("db_on_callers_thread", default=False)


@contextmanager
def on_callers_thread() -> Iterator[None]:
    """Within this block, database work is run on the thread that waits for the loop (see the docstring)."""
    token = _ON_CALLERS_THREAD.set(True)
    try:
        yield
    finally:
        _ON_CALLERS_THREAD.reset(token)


def callers_thread_wanted() -> bool:
    """Whether the caller asked for its own thread (`on_callers_thread()`): for pools other than these."""
    return _ON_CALLERS_THREAD.get()


class DatabaseThreads:
    """A named pool of threads for database work, each with its own connection."""

    # After a hold ran out, how long the pool awaits its work without holding the loop.
    HOLD_PAUSE_SECONDS = 1.0

    def __init__(self, name: str, size: int, *, hold_loop_seconds: float = 0.0,
                 hold_while: Callable[[], bool] = lambda: True):
        self.name = name
        self.size = size
        self.hold_loop_seconds = hold_loop_seconds
        self.hold_while = hold_while
        self._hold_again_at = 0.0
        self._executor: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=self.name)
        return self._executor

    async def run(self, function: Callable[..., T], *args, **kwargs) -> T:
        """`function(*args, **kwargs)` on one of the threads (with the caller's context variables): its result,
        waited for holding the loop up to `hold_loop_seconds`, then awaited."""
        if _ON_CALLERS_THREAD.get():
            return await sync_to_async(function, thread_sensitive=True)(*args, **kwargs)
        future = self.executor().submit(self._work(function, args, kwargs))
        if self.hold_loop_seconds and time.monotonic() >= self._hold_again_at and self.hold_while():
            try:
                return future.result(timeout=self.hold_loop_seconds)
            except TimeoutError:
                if not future.done():  # else it is the work's own TimeoutError, raised again below
                    self._hold_again_at = time.monotonic() + self.HOLD_PAUSE_SECONDS
        return await asyncio.wrap_future(future)

    def start(self, function: Callable[..., T], *args, **kwargs) -> asyncio.Future:
        """`function(*args, **kwargs)` on one of the threads, started now without holding the loop: for
        bookkeeping off a call's path (awaiting the future is optional)."""
        if _ON_CALLERS_THREAD.get():
            return asyncio.ensure_future(sync_to_async(function, thread_sensitive=True)(*args, **kwargs))
        return asyncio.wrap_future(self.executor().submit(self._work(function, args, kwargs)))

    @staticmethod
    def _work(function: Callable[..., T], args: tuple, kwargs: dict) -> Callable[[], T]:
        return partial(contextvars.copy_context().run, run_and_release, partial(function, *args, **kwargs))

    def shutdown(self) -> None:
        """After fork, and at shutdown: the next piece of work starts new threads."""
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)


def run_and_release(function: Callable[[], T]) -> T:
    """Run, then let go of the connection as a request's end would (pooled: back to the pool)."""
    try:
        return function()
    finally:
        close_old_connections()
