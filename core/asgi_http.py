"""HTTP on raw ASGI, for the routes served in front of Django (the gateway, /healthz; config/asgi.py):
reading a bounded body, the site's headers, sending answers, one access-log line.

Those routes skip Django's request cycle so that a stream costs no thread and little CPU per relayed chunk;
this module is what Django's request and response classes and its security, CSP and common middleware would
otherwise have done for them.
"""

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import cache
from urllib.parse import quote

from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.http.request import split_domain_port, validate_host

from .stalls import StallWatch

Scope = dict
Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]

DRAIN_LIMIT = 64 * 1024  # of a body not needed for the answer: read and dropped, so the connection can be reused
DRAIN_SECONDS = 1.0


class BodyTooLarge(Exception):
    pass


class ClientGone(Exception):
    """The client closed its connection."""


@dataclass
class Request:
    """What the gateway needs of an ASGI request: method, path, headers by lowercase name, the body on demand."""

    scope: Scope
    receive: Receive
    method: str
    path: str
    headers: dict[str, str]
    body_done: bool = False
    _pending: list[dict] = field(default_factory=list)

    @classmethod
    def of(cls, scope: Scope, receive: Receive) -> "Request":
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers[name.decode("latin-1").lower()] = value.decode("latin-1")
        return cls(scope, receive, scope["method"], scope["path"], headers)

    def header(self, name: str) -> str:
        return self.headers.get(name, "")

    @property
    def is_secure(self) -> bool:
        if self.scope.get("scheme") == "https":
            return True
        proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
        if proxy_header:
            name, value = proxy_header
            forwarded = self.header(name.removeprefix("HTTP_").replace("_", "-").lower())
            return forwarded.split(",")[0].strip() == value
        return False

    @property
    def host(self) -> str:
        return self.header("host")

    async def body(self, limit: int) -> bytes:
        """The whole body (however it was framed: a Content-Length or chunks), or BodyTooLarge past `limit`."""
        declared = self.header("content-length")
        if declared.isdigit() and int(declared) > limit:
            raise BodyTooLarge
        parts, size = [], 0
        while not self.body_done:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            part = message.get("body", b"")
            size += len(part)
            if size > limit:
                raise BodyTooLarge
            parts.append(part)
            self.body_done = not message.get("more_body", False)
        return b"".join(parts)

    async def drain(self) -> bool:
        """Read and drop a body nobody needs (an answer came first), within bounds; False if some is left."""
        size = 0
        try:
            async with asyncio.timeout(DRAIN_SECONDS):
                while not self.body_done and size <= DRAIN_LIMIT:
                    message = await self.receive()
                    if message["type"] == "http.disconnect":
                        return False
                    size += len(message.get("body", b""))
                    self.body_done = not message.get("more_body", False)
        except TimeoutError:
            return False
        return self.body_done


def host_allowed(host: str) -> bool:
    domain, _ = split_domain_port(host)
    return bool(domain) and validate_host(domain, settings.ALLOWED_HOSTS)


@cache
def site_headers() -> tuple[tuple[bytes, bytes], ...]:
    """The headers every answer of the site carries (Django's security middleware and the CSP's), built once."""
    headers = {}
    if settings.X_FRAME_OPTIONS:
        headers["X-Frame-Options"] = settings.X_FRAME_OPTIONS
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers["X-Content-Type-Options"] = "nosniff"
    if settings.SECURE_REFERRER_POLICY:
        headers["Referrer-Policy"] = settings.SECURE_REFERRER_POLICY
    if getattr(settings, "SECURE_CROSS_ORIGIN_OPENER_POLICY", None):
        headers["Cross-Origin-Opener-Policy"] = settings.SECURE_CROSS_ORIGIN_OPENER_POLICY
    for header, policy in ((HEADER, build_policy()), (HEADER_REPORT_ONLY, build_policy(report_only=True))):
        if policy:
            headers[header] = policy
    return tuple((name.lower().encode(), value.encode()) for name, value in headers.items())


@cache
def hsts_header() -> tuple[bytes, bytes] | None:
    if not settings.SECURE_HSTS_SECONDS:
        return None
    value = f"max-age={settings.SECURE_HSTS_SECONDS}"
    if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
        value += "; includeSubDomains"
    if settings.SECURE_HSTS_PRELOAD:
        value += "; preload"
    return b"strict-transport-security", value.encode()


def answer_headers(request: Request | None, content_type: bytes, extra: dict[str, str] | None = None) -> list:
    headers = [(b"content-type", content_type), *site_headers()]
    if request is not None and request.is_secure and (hsts := hsts_header()) is not None:
        headers.append(hsts)
    for name, value in (extra or {}).items():
        headers.append((name.lower().encode("latin-1"), value.encode("latin-1")))
    return headers


@dataclass
class Answer:
    """A whole answer: status, body and extra headers."""

    status: int
    body: bytes
    content_type: bytes = b"application/json"
    headers: dict[str, str] = field(default_factory=dict)


def json_answer(status: int, document: object, headers: dict[str, str] | None = None) -> Answer:
    return Answer(status, json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode(), headers=headers or {})


async def send_answer(send: Send, request: Request | None, answer: Answer) -> None:
    headers = answer_headers(request, answer.content_type, answer.headers)
    headers.append((b"content-length", str(len(answer.body)).encode()))
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})


def redirect_to_https(request: Request) -> Answer:
    location = f"https://{request.host}{quote(request.path, safe='/:@!$&()*+,;=-._~')}"
    return Answer(301, b"", b"text/plain", {"Location": location})


async def send_stream(
    send: Send, request: Request, events: AsyncIterator[bytes], *, write_timeout: float,
    headers: dict[str, str] | None = None,
) -> None:
    """Relay an event stream chunk by chunk as it comes, each write waiting for the client (backpressure).

    A client that goes away, or reads nothing for `write_timeout` seconds, ends the relay: the caller closes
    the provider's stream (cancellation reaches it at once).
    """
    headers = answer_headers(
        request, b"text/event-stream", {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})}
    )
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(None) as deadline:
        # A write that waits `write_timeout` for the client ends the relay (the deadline raises TimeoutError).
        writes = StallWatch(loop, write_timeout, lambda: deadline.reschedule(loop.time()))
        try:
            async for chunk in events:
                writes.since = loop.time()
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                writes.since = None
        finally:
            writes.stop()
    await send({"type": "http.response.body", "body": b""})


async def wait_for_disconnect(receive: Receive) -> None:
    """Returns when the client has gone (the body was read already, so only `http.disconnect` can come)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return


CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def printable(text: str) -> str:
    """Text fit for one log line: control characters (a newline would start a forged line) escaped."""
    return CONTROL_CHARACTERS.sub(lambda match: f"\\x{ord(match.group()):02x}", text)
