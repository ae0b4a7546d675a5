"""The gateway under the server `make run` starts (gunicorn with ASGI workers): many streams at once, clients
that go away or never read, the cap on calls in flight, and /healthz answering through all of it."""

import asyncio
import json
import select
import socket
import tempfile
import threading
from pathlib import Path

import aiohttp
import httpx
import pytest

from bench.served import app_env, prepare, serving
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI

STREAM = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
FIRST_CONTENT = b'"content": "Hel"'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI(keys={PLANTED_KEY}) as provider:
        yield provider


def served_app(fake: FakeOpenAI, directory: str, **settings: str):
    env = {**app_env(directory, free_port()), "WEB_CONCURRENCY": "1", **settings}
    token = prepare(env)
    context = serving(env, token, log=Path(directory) / "server.log")
    served = context.__enter__()
    auth = served.auth
    httpx.post(f"{served.url}/api/v1/connections/", headers=auth, json={
        "name": "fake", "provider": "openai", "auth_method": "api_key", "secrets": {"api_key": PLANTED_KEY},
        "config": {"base_url": fake.base_url}}).raise_for_status()
    httpx.post(f"{served.url}/api/v1/endpoints/", headers=auth, json={
        "name": "chat", "connection": "fake", "model": "gpt-4o-mini"}).raise_for_status()
    return context, served


@pytest.fixture(scope="module")
def served(fake):
    with tempfile.TemporaryDirectory(prefix="serving-") as directory:
        context, served = served_app(fake, directory)
        try:
            yield served
        finally:
            context.__exit__(None, None, None)


@pytest.fixture
def gate(fake):
    """Streams hold after their first content chunk until the test releases them."""
    fake.stream_gate = threading.Event()
    yield fake.stream_gate
    fake.stream_gate.set()
    fake.stream_gate = None


async def open_streams(url: str, headers: dict, count: int) -> tuple[aiohttp.ClientSession, list]:
    """`count` streams started at once, each read up to its first content chunk (the provider holds the rest)."""
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def first_chunk():
        response = await session.post(f"{url}/gateway/v1/chat/completions", json=STREAM, headers=headers)
        received = b""
        while FIRST_CONTENT not in received:
            received += await response.content.readany()
        return response, received

    return session, list(await asyncio.gather(*(first_chunk() for _ in range(count))))


async def read_to_the_end(response, received: bytes) -> bytes:
    return received + await response.content.read()


def test_hundreds_of_streams_are_in_flight_at_once_and_all_complete(served, gate):
    count = 300  # far past what a thread per call served (16)

    async def scenario():
        session, streams = await open_streams(served.url, served.auth, count)
        try:
            in_flight = len(streams)  # every one had its first chunk while the provider held them all
            gate.set()
            bodies = await asyncio.gather(*(read_to_the_end(response, received) for response, received in streams))
            return in_flight, bodies
        finally:
            await session.close()

    in_flight, bodies = asyncio.run(scenario())

    assert in_flight == count
    for body in bodies:
        text = "".join(json.loads(line[6:])["choices"][0]["delta"].get("content") or ""
                       for line in body.decode().splitlines() if line.startswith("data: {"))
        assert text == "Hello from the fake" and body.endswith(b"data: [DONE]\n\n")


def provider_connections_closed(fake: FakeOpenAI) -> int:
    """How many of the provider's connections the gateway has closed (EOF on the fake's side)."""
    closed = 0
    for connection in list(fake.server.connections):
        try:
            readable, _, _ = select.select([connection], [], [], 0)
            if readable and connection.recv(1, socket.MSG_PEEK) == b"":
                closed += 1
        except OSError:
            closed += 1
    return closed


def test_a_client_that_goes_away_ends_its_provider_request_at_once(served, fake, gate):
    before = provider_connections_closed(fake)

    async def read_one_chunk_and_leave():
        session, [(response, _)] = await open_streams(served.url, served.auth, 1)
        response.close()
        await session.close()

    asyncio.run(read_one_chunk_and_leave())
    for _ in range(100):  # the provider still holds the stream: only the gateway can have closed it
        if provider_connections_closed(fake) > before:
            break
        threading.Event().wait(0.05)

    assert not gate.is_set()
    assert provider_connections_closed(fake) == before + 1


def test_a_slow_headers_client_and_an_unread_stream_do_not_hold_up_healthz(served, gate):
    slow = socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
    slow.sendall(b"POST /gateway/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Le")  # and no more
    unread = socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
    body = json.dumps(STREAM).encode()
    unread.sendall(b"POST /gateway/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                   b"application/json\r\nAuthorization: " + served.auth["Authorization"].encode()
                   + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))  # and never read
    try:
        probes = [httpx.get(f"{served.url}/healthz", timeout=30) for _ in range(5)]
        page = httpx.get(f"{served.url}/accounts/login/", timeout=30)
    finally:
        slow.close()
        unread.close()

    assert [probe.status_code for probe in probes] == [200] * 5 and page.status_code == 200


def test_past_the_cap_on_calls_in_flight_a_call_is_refused_at_once_with_retry_after(fake, gate):
    with tempfile.TemporaryDirectory(prefix="serving-capped-") as directory:
        context, served = served_app(fake, directory, GATEWAY_MAX_IN_FLIGHT="2")
        try:
            async def scenario():
                session, held = await open_streams(served.url, served.auth, 2)
                try:
                    refused = httpx.post(f"{served.url}/gateway/v1/chat/completions", json=STREAM,
                                         headers=served.auth, timeout=30)
                    gate.set()
                    for response, received in held:
                        await read_to_the_end(response, received)
                    return refused
                finally:
                    await session.close()

            refused = asyncio.run(scenario())
            after = httpx.post(f"{served.url}/gateway/v1/chat/completions", json=STREAM, headers=served.auth,
                               timeout=30)
        finally:
            context.__exit__(None, None, None)

    assert refused.status_code == 503 and refused.headers["Retry-After"].isdigit()
    assert refused.json()["error"]["code"] == "gateway_busy"
    assert after.status_code == 200  # the slots came back when the streams ended
