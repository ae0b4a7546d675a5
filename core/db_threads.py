"""Database work for code that runs on the event loop (the gateway, /healthz): a few threads of its own.

Django's database layer is synchronous, and a connection belongs to a thread. Code on the event loop hands
its queries to a small pool of threads instead, so the number of database connections does not grow with
the number of calls in flight, and a stream never holds one while it streams. After each piece of work the
thread gives its connection back as the settings say: to PostgreSQL's pool (CONN_MAX_AGE 0), or kept open
for the next piece of work (SQLite, CONN_MAX_AGE above 0).

An in-process caller that holds a transaction and waits for the loop (the test client) runs this work on
its own thread instead, where its transaction lives: `on_callers_thread()` says so.
"""

import asyncio
import contextvars
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

    def __init__(self, name: str, size: int):
        self.name = name
        self.size = size
        self._executor: ThreadPoolExecutor | None = None

    def executor(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.size, thread_name_prefix=self.name)
        return self._executor

    async def run(self, function: Callable[..., T], *args, **kwargs) -> T:
        """`function(*args, **kwargs)` on one of the threads (with the caller's context variables), awaited."""
        if _ON_CALLERS_THREAD.get():
            return await sync_to_async(function, thread_sensitive=True)(*args, **kwargs)
        work = partial(contextvars.copy_context().run, run_and_release, partial(function, *args, **kwargs))
        return await asyncio.get_running_loop().run_in_executor(self.executor(), work)

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
