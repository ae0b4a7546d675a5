"""The gunicorn worker `make run` serves with (config/workers.py): gthread, with fast-track keep-alive."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server(tmp_path):
    """The probe app served with config/gunicorn.py, one worker, as `make run` configures it."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "server.log", "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "config/gunicorn.py", "tests.config.wsgi_probe:application"],
        cwd=ROOT, env={"PATH": os.environ["PATH"], "PORT": str(port), "WEB_CONCURRENCY": "1"},
        stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url, timeout=1)
            break
        except httpx.TransportError:
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.1)
    process.url = url
    yield process
    if process.poll() is None:
        process.terminate()
        process.wait(timeout=10)


def test_a_client_that_asks_again_at_once_is_answered_by_the_same_thread(server):
    with httpx.Client(base_url=server.url) as client:
        answers = [client.get("/").json() for _ in range(30)]

    assert len({answer["port"] for answer in answers}) == 1  # one kept-alive connection
    threads = [answer["thread"] for answer in answers]
    # Plain gthread hands every request to whichever pool thread is next (several of its 8); a slow
    # moment on a busy machine may still send one request through the poller.
    assert threads.count(threads[-1]) >= 25


def test_a_client_that_pauses_keeps_its_connection(server):
    with httpx.Client(base_url=server.url) as client:
        first = client.get("/").json()
        time.sleep(0.2)  # far beyond the fast-track wait: the connection went back to the poller
        second = client.get("/").json()

    assert second["port"] == first["port"]


def test_pipelined_requests_are_all_answered(server):
    port = int(server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(b"GET / HTTP/1.1\r\nHost: probe\r\n\r\n" * 3)
        received = b""
        while received.count(b"HTTP/1.1 200") < 3 or not received.endswith(b"}"):  # the third body too
            chunk = connection.recv(65536)
            assert chunk, received
            received += chunk

    answers = [json.loads(part.split(b"\r\n\r\n", 1)[1]) for part in received.split(b"HTTP/1.1 ")[1:]]
    assert len(answers) == 3 and all("thread" in answer for answer in answers)


def test_a_slow_request_does_not_hold_up_another_connection(server):
    with httpx.Client(base_url=server.url, timeout=10) as slow, httpx.Client(base_url=server.url) as quick:
        quick.get("/")  # a kept-alive connection whose thread could wait on it
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(slow.get, "/?sleep=1")
            time.sleep(0.2)
            started = time.monotonic()
            assert quick.get("/").status_code == 200
            assert time.monotonic() - started < 0.5
            assert pending.result().status_code == 200


def test_a_stopping_worker_finishes_its_request_and_exits(server):
    idle = httpx.Client(base_url=server.url)
    idle.get("/")  # a kept-alive connection left open
    with httpx.Client(base_url=server.url, timeout=10) as client:
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(client.get, "/?sleep=0.5")
            time.sleep(0.2)
            server.send_signal(signal.SIGTERM)
            assert pending.result().status_code == 200

    assert server.wait(timeout=10) == 0
    idle.close()
