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


# --- The edges of HTTP ----------------------------------------------------------------------------------------


def exchange(served, raw_requests: list[bytes]) -> list[bytes]:
    """Send requests one after another on one kept-alive connection; each answer's head and body as received."""
    answers = []
    with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1])), timeout=30) as connection:
        stream = connection.makefile("rb")
        for raw in raw_requests:
            try:
                connection.sendall(raw)
            except OSError:
                answers.append(b"")
                continue
            head = b""
            try:
                while not head.endswith(b"\r\n\r\n"):
                    byte = stream.read(1)
                    if not byte:
                        break
                    head += byte
                length = next((int(line.split(b":")[1]) for line in head.lower().split(b"\r\n")
                               if line.startswith(b"content-length:")), 0)
                answers.append(head + stream.read(length))
            except ConnectionResetError:
                answers += [RESET] * (len(raw_requests) - len(answers))
                break
    return answers


RESET = b"(connection reset)"


def request(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}",
             *(f"{name}: {value}" for name, value in (headers or {}).items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@pytest.mark.parametrize("size", [10_000, 1_000_000])
def test_the_next_request_on_a_connection_is_answered_after_an_early_refusal_of_a_big_body(served, size):
    refused = request("POST", "/gateway/v1/chat/completions", b"{" + b" " * size + b"}",
                      {"Authorization": "Bearer llmc_not-a-real-token", "Content-Type": "application/json"})
    healthz = request("GET", "/healthz")

    answers = exchange(served, [refused, healthz])

    if size > 100_000 and answers[0] == RESET:
        # Closed with the body's rest unread: the kernel may answer it with a reset that overtakes the 401.
        return
    assert answers[0].startswith(b"HTTP/1.1 401")
    # The unread body was drained (a small one) or the connection closed after the answer (a big one): never
    # taken for the next request.
    if b"connection: close" in answers[0].lower():
        # Nothing more on this connection: closed, or (the body's rest unread) reset by the kernel.
        assert answers[1] in (b"", RESET)
    else:
        assert answers[1].startswith(b"HTTP/1.1 200") and b'"status":"ok"' in answers[1]


def chunked_body(document: dict) -> bytes:
    data = json.dumps(document).encode()
    return b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (data[:20], data[20:])) + b"0\r\n\r\n"


def test_chunked_request_bodies_are_read_by_the_gateway_and_the_api(served):
    auth = {"Authorization": served.auth["Authorization"], "Content-Type": "application/json",
            "Transfer-Encoding": "chunked"}

    def chunked(path: str, document: dict) -> bytes:
        head = "\r\n".join([f"POST {path} HTTP/1.1", "Host: 127.0.0.1", *(f"{k}: {v}" for k, v in auth.items())])
        return head.encode() + b"\r\n\r\n" + chunked_body(document)

    call, created = exchange(served, [
        chunked("/gateway/v1/chat/completions", {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}),
        chunked("/api/v1/endpoints/", {"name": "chunked", "connection": "fake", "model": "gpt-4o-mini"}),
    ])

    assert call.startswith(b"HTTP/1.1 200") and b"Hello from the fake" in call
    assert created.startswith(b"HTTP/1.1 201") and b'"name":"chunked"' in created


def test_a_path_cannot_write_a_line_of_its_own_into_the_log(served):
    exchange(served, [request("GET", "/gateway/x%0A127.0.0.1%20%22GET%20/forged%22%20200%200%200ms%00/invocations")])

    def access_line(line: str) -> bool:
        return line.startswith('127.0.0.1 "GET /gateway/x')

    for _ in range(100):  # the access line is written once the answer is sent
        lines = served.log.read_text().splitlines()
        if any(access_line(line) for line in lines):
            break
        threading.Event().wait(0.05)

    assert not any(line.startswith('127.0.0.1 "GET /forged"') for line in lines)
    # Both lines that name the path, Django's "Not Found" and the access line, hold all of it, escaped.
    naming_it = [line for line in lines if "/forged" in line]
    assert len(naming_it) == 2 and any(access_line(line) for line in naming_it)
    assert all("/gateway/x" in line and "/invocations" in line for line in naming_it)
    assert any("\\x0a" in line and "\\x00" in line for line in naming_it)


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_streams_in_flight_hold_no_database_connection_and_the_pool_bounds_them(fake, gate):
    """100 streams through two worker processes with pools of 3: PostgreSQL sees at most the pools' 6."""
    import os
    import uuid

    import psycopg
    from django.db import connection

    server_url = os.environ["TEST_DATABASE_URL"]
    name = f"pool_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    database_url = server_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        with tempfile.TemporaryDirectory(prefix="serving-pool-") as directory:
            context, served = served_app(fake, directory, DATABASE_URL=database_url, WEB_CONCURRENCY="2",
                                         DATABASE_POOL_SIZE="3")
            try:
                async def scenario():
                    session, streams = await open_streams(served.url, served.auth, 100)
                    try:
                        with psycopg.connect(server_url, autocommit=True) as watcher:
                            open_now = watcher.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                                       [name]).fetchone()[0]
                        gate.set()
                        for response, received in streams:
                            await read_to_the_end(response, received)
                        return len(streams), open_now
                    finally:
                        await session.close()

                in_flight, open_connections = asyncio.run(scenario())
            finally:
                context.__exit__(None, None, None)
    finally:
        connection.close()
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    assert in_flight == 100
    assert open_connections <= 2 * 3


class EndlessProvider:
    """An OpenAI-compatible provider whose one chat stream never ends: a large event every 50 ms, written
    until the gateway closes the connection (then `closed` is set)."""

    EVENT = b'data: {"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": "%s"}}]}\n\n' % (
        b"x" * 256 * 1024)

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.base_url = f"http://127.0.0.1:{self.listener.getsockname()[1]}/v1"
        self.closed = threading.Event()
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        connection, _ = self.listener.accept()
        received = b""
        while b"\r\n\r\n" not in received:
            received += connection.recv(65536)
        head, _, body = received.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length")))
        while len(body) < length:
            body += connection.recv(65536)
        frame = b"%x\r\n%s\r\n" % (len(self.EVENT), self.EVENT)
        try:
            connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                               b"Transfer-Encoding: chunked\r\n\r\n")
            while True:
                connection.sendall(frame)
                threading.Event().wait(0.05)
        except OSError:
            self.closed.set()
        finally:
            connection.close()


def test_a_client_that_stops_reading_a_stream_is_dropped_after_the_gateway_timeout_and_the_provider_let_go():
    provider = EndlessProvider()
    with tempfile.TemporaryDirectory(prefix="serving-unread-") as directory:
        context, served = served_app(provider, directory, GATEWAY_TIMEOUT="2")
        try:
            client = socket.socket()
            client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            client.connect(("127.0.0.1", int(served.url.rsplit(":", 1)[1])))
            body = json.dumps(STREAM).encode()
            client.sendall(b"POST /gateway/v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                           b"application/json\r\nAuthorization: " + served.auth["Authorization"].encode()
                           + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            assert client.recv(15) == b"HTTP/1.1 200 OK"  # and nothing more is read

            # The provider keeps writing, so it never times out; only the client's stalled read can end this.
            assert provider.closed.wait(60), "the gateway kept the provider's stream open"
            client.settimeout(60)
            try:
                while client.recv(1 << 20):  # what the gateway wrote before it gave up, then the end
                    pass
            except ConnectionResetError:
                pass
            client.close()
        finally:
            context.__exit__(None, None, None)
