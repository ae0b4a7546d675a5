"""A keep-alive HTTP/1.1 client on a plain socket, for timing the served app. Not a test.

The benches run on the same two cores as the server they time. httpx spends most of a millisecond of CPU on
each request on its own side (building it, its cookie jar, header models, decoding), which counts into every
latency a bench reports and takes CPU from the server under load. This client sends bytes built beforehand
and parses the answer with a buffered reader: tens of microseconds a request. It speaks what the benches need:
Content-Length and chunked bodies, cookies set by the server (name and value; deleted when the server expires
them), and a new connection when the server has closed an idle one.
"""

import json
import socket
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit


@dataclass
class LeanResponse:
    status_code: int
    headers: dict[str, str]  # lowercase names; a repeated header keeps its last value
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")

    def json(self):
        return json.loads(self.content)


class LeanClient:
    """One keep-alive connection to `base_url`; `headers` go with every request (after Host)."""

    def __init__(self, base_url: str, headers: dict[str, str] | None = None, cookies: dict[str, str] | None = None,
                 timeout: float = 30):
        parts = urlsplit(base_url)
        self.address = (parts.hostname, parts.port or 80)
        self.host = parts.netloc
        self.headers = dict(headers or {})
        self.cookies = dict(cookies or {})
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.reader = None

    def build(self, method: str, path: str, *, json_body=None, form: dict | None = None,
              headers: dict[str, str] | None = None) -> bytes:
        """The request's bytes, built ahead of timing it (the Cookie header from the cookies held now)."""
        body = b""
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}"]
        lines += [f"{name}: {value}" for name, value in {**self.headers, **(headers or {})}.items()]
        if self.cookies:
            lines.append("Cookie: " + "; ".join(f"{name}={value}" for name, value in self.cookies.items()))
        if json_body is not None:
            body = json.dumps(json_body).encode()
            lines.append("Content-Type: application/json")
        elif form is not None:
            body = urlencode(form).encode()
            lines.append("Content-Type: application/x-www-form-urlencoded")
        if body or method not in ("GET", "HEAD"):
            lines.append(f"Content-Length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    def request(self, method: str, path: str, **kwargs) -> LeanResponse:
        return self.send(self.build(method, path, **kwargs))

    def get(self, path: str, **kwargs) -> LeanResponse:
        return self.request("GET", path, **kwargs)

    def send(self, request: bytes) -> LeanResponse:
        """Send built bytes and read the whole answer; once more on a new connection if the server had closed
        the idle one before reading the request (nothing was served: safe for any method)."""
        for attempt in (1, 2):
            if self.sock is None:
                self.connect()
            try:
                self.sock.sendall(request)
                status_line = self.reader.readline()
            except (BrokenPipeError, ConnectionResetError):
                status_line = b""
            if status_line:
                return self.read_response(status_line)
            self.close()
        raise ConnectionError(f"{self.address}: the connection closed before an answer")

    def read_response(self, status_line: bytes) -> LeanResponse:
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while True:
            line = self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.decode("latin-1").partition(":")
            name, value = name.strip().lower(), value.strip()
            headers[name] = value
            if name == "set-cookie":
                self.remember_cookie(value)
        if "content-length" in headers:
            content = self.reader.read(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            pieces = []
            while size := int(self.reader.readline().split(b";")[0], 16):
                pieces.append(self.reader.read(size))
                self.reader.readline()
            while self.reader.readline() not in (b"\r\n", b"\n", b""):
                pass  # trailers
            content = b"".join(pieces)
        else:
            content = self.reader.read()
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return LeanResponse(status, headers, content)

    def remember_cookie(self, value: str) -> None:
        pair, *attributes = value.split(";")
        name, _, cookie = pair.strip().partition("=")
        expired = any(attribute.strip().lower() in ("max-age=0", "expires=thu, 01 jan 1970 00:00:00 gmt")
                      for attribute in attributes)
        if expired:
            self.cookies.pop(name, None)
        else:
            self.cookies[name] = cookie

    def connect(self) -> None:
        self.sock = socket.create_connection(self.address, timeout=self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb", buffering=65536)

    def close(self) -> None:
        if self.sock is not None:
            self.reader.close()
            self.sock.close()
        self.sock = self.reader = None

    def __enter__(self) -> "LeanClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
