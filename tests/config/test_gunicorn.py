"""The server `make run` starts: each worker on a core of its own when there are cores enough."""

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest

from bench.served import app_env, prepare, serving
from tests.gateway.test_serving import free_port

CORES = sorted(os.sched_getaffinity(0))


def allowed_cores(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def workers_of(master: int) -> list[int]:
    """The gunicorn workers: the master's children."""
    return [int(pid) for children in Path(f"/proc/{master}/task").glob("*/children")
            for pid in children.read_text().split()]


def wait_for_workers(master: int, count: int) -> list[int]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        workers = workers_of(master)
        if len(workers) == count:
            return workers
        time.sleep(0.1)
    raise AssertionError(f"gunicorn did not run {count} workers")


@pytest.fixture(scope="module")
def prepared():
    """A database set up as `make run` sets it up, for servers started with different settings."""
    with tempfile.TemporaryDirectory(prefix="affinity-") as directory:
        env = app_env(directory, free_port())
        yield env, prepare(env)


@pytest.mark.skipif(len(CORES) < 2, reason="needs two cores")
def test_each_worker_runs_on_a_core_of_its_own_and_a_restarted_worker_takes_the_free_one(prepared):
    env, token = prepared
    with serving({**env, "WEB_CONCURRENCY": "2"}, token) as served:
        workers = wait_for_workers(served.pid, 2)
        cores = [allowed_cores(pid) for pid in workers]
        assert all(len(each) == 1 for each in cores), cores
        assert cores[0] != cores[1]

        # A worker that dies is replaced on the core it left, not on the other worker's.
        os.kill(workers[0], signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            replaced = [pid for pid in workers_of(served.pid) if pid not in workers]
            if replaced:
                break
            time.sleep(0.1)
        assert replaced, "gunicorn did not replace the worker"
        assert allowed_cores(replaced[0]) == cores[0]
        assert allowed_cores(workers[1]) == cores[1]


@pytest.mark.parametrize("settings", [{"WEB_CONCURRENCY": "2", "WORKER_CPU_AFFINITY": "off"},
                                      {"WEB_CONCURRENCY": str(len(CORES) + 1)}], ids=["off", "more-workers-than-cores"])
def test_with_affinity_off_or_more_workers_than_cores_no_worker_is_pinned(prepared, settings):
    env, token = prepared
    with serving({**env, **settings}, token) as served:
        workers = wait_for_workers(served.pid, int(settings["WEB_CONCURRENCY"]))
        assert all(allowed_cores(pid) == set(CORES) for pid in workers)
