"""Database work handed from the event loop to a pool's threads, with and without holding the loop."""

import asyncio
import threading

import pytest

from core.db_threads import DatabaseThreads


@pytest.fixture
def held():
    pool = DatabaseThreads("test-held", 2, hold_loop_seconds=0.002)
    yield pool
    pool.shutdown()


def test_held_work_runs_on_a_pool_thread_and_returns_its_result(held):
    async def scenario():
        return await held.run(lambda: (threading.current_thread().name, 42))

    thread_name, result = asyncio.run(scenario())
    assert thread_name.startswith("test-held") and result == 42


def test_a_hold_ends_so_work_that_waits_for_the_loop_still_finishes(held):
    """Work that cannot end until the loop runs something else would deadlock an unbounded hold."""
    async def scenario():
        loop_ran = threading.Event()

        def waits_for_the_loop():
            assert loop_ran.wait(10), "the loop stayed held"
            return "done"

        work = asyncio.ensure_future(held.run(waits_for_the_loop))
        await asyncio.sleep(0)  # the work starts and holds the loop, then lets go
        loop_ran.set()
        return await asyncio.wait_for(work, 10)

    assert asyncio.run(scenario()) == "done"


def test_the_works_own_errors_reach_the_caller_held_or_not(held):
    def times_out():
        raise TimeoutError("the work's own")

    def fails():
        raise ValueError("bad")

    async def scenario():
        errors = []
        for work in (times_out, fails):
            try:
                await held.run(work)
            except (TimeoutError, ValueError) as error:
                errors.append(str(error))
        return errors

    assert asyncio.run(scenario()) == ["the work's own", "bad"]


def test_started_work_runs_on_a_pool_thread_and_its_future_has_the_result():
    pool = DatabaseThreads("test-started", 1, hold_loop_seconds=0.002)
    try:
        async def scenario():
            return await pool.start(lambda: threading.current_thread().name)

        assert asyncio.run(scenario()).startswith("test-started")
    finally:
        pool.shutdown()


def test_a_pool_holds_the_loop_only_while_hold_while_says_so():
    """With a hold far longer than the work could wait, only not holding lets the loop free the work."""
    pool = DatabaseThreads("test-busy", 1, hold_loop_seconds=30, hold_while=lambda: False)
    try:
        async def scenario():
            loop_ran = threading.Event()
            work = asyncio.ensure_future(pool.run(loop_ran.wait, 10))
            await asyncio.sleep(0)
            loop_ran.set()
            return await asyncio.wait_for(work, 10)

        assert asyncio.run(scenario()) is True
    finally:
        pool.shutdown()
