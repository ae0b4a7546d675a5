"""A real HTTP/1.1 server on 127.0.0.1 in a thread, recording every request, for fake providers to build on."""

import json
import socket
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


@dataclass
class RecordedRequest:
    """What the fake received: method, path, query, headers (lower-case names) and body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self.target).query)

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    """An answer: a whole body, or `chunks` sent one by one (chunked encoding, each written as produced)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    chunks: Iterable[bytes] | None = None
    delay: float = 0.0  # wait this long first (ends early when the server stops): a hanging provider

    @classmethod
    def json(cls, document: object, status: int = 200, headers: dict[str, str] | None = None) -> "Reply":
        return cls(status, {"Content-Type": "application/json", **(headers or {})}, json.dumps(document).encode())


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real providers do
    disable_nagle_algorithm = True  # else keep-alive clients wait ~40 ms for delayed ACKs on small answers
    server: "FakeHTTPServer"

    def handle_any(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = RecordedRequest(
            self.command, self.path, {name.lower(): value for name, value in self.headers.items()}, body
        )
        fake = self.server.fake
        with fake.lock:
            fake.requests.append(request)
        reply = fake.handle(request)
        if reply.delay and fake.stopping.wait(reply.delay):
            self.close_connection = True
            return
        self.send_response(reply.status)
        for name, value in reply.headers.items():
            self.send_header(name, value)
        if reply.chunks is None:
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            self.wfile.write(reply.body)
            return
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in reply.chunks:
            if fake.stopping.is_set():
                self.close_connection = True
                return
            if chunk:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any

    def log_message(self, format: str, *args) -> None:
        pass  # tests read `requests`; stderr noise helps nobody


class FakeHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024  # a gateway opening hundreds of streams at once is not a SYN flood
    fake: "FakeServer"

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-answer is part of what tests do; anything else still shows."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            super().handle_error(request, client_address)

    def get_request(self):
        connection, address = super().get_request()
        with self.fake.lock:
            self.fake.connections.append(connection)
        return connection, address


class FakeServer:
    """Serves `handle(request) -> Reply` on an ephemeral 127.0.0.1 port until stopped.

    With `listen=False` the port is bound but refuses connections until `listen()`: a provider that is
    down, then comes up.
    """

    def __init__(self, handle: Callable[[RecordedRequest], Reply], *, listen: bool = True):
        self.handle = handle
        self.requests: list[RecordedRequest] = []
        self.connections: list[socket.socket] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.httpd = FakeHTTPServer(("127.0.0.1", 0), Handler, bind_and_activate=False)
        self.httpd.fake = self
        self.httpd.server_bind()
        self.port: int = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread: threading.Thread | None = None
        if listen:
            self.listen()

    def listen(self) -> None:
        self.httpd.server_activate()
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.httpd.shutdown()
            self.thread.join(timeout=5)
        self.httpd.server_close()
        with self.lock:
            for connection in self.connections:  # ends keep-alive handler threads and clients' pooled sockets
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def __enter__(self) -> "FakeServer":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (bound, released), for unreachable providers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServedFake:
    """What every fake provider does with its FakeServer (`self.server`): its address, the requests it
    recorded, and stopping it, by hand or at the end of `with Fake(...) as fake:`."""

    server: FakeServer

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[RecordedRequest]:
        return self.server.requests

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()
