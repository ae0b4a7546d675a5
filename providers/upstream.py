"""The one way the product talks to providers: pooled keep-alive HTTP with timeouts, an address guard,
bounded answers and safe retries, on asyncio (aiohttp).

Each event loop (one per server process) keeps one aiohttp session per address policy (strict, or loopback
allowed for local servers such as Ollama), created on first use and shared by every call on that loop. The
sessions follow no redirect, keep no cookie and read no proxy variable or .netrc: nothing stands between
a call and the address that was checked.

The address guard sits where connections are opened: a host name is resolved once, every address it
resolves to is checked (providers/addresses.py), and the socket is opened to an address that was checked,
so a DNS answer that changes between check and connect (rebinding) cannot slip through; a literal IP is
checked before the request. TLS still verifies the certificate against the host name.

Retries never repeat a request the provider may have executed: only failures to connect (nothing was
sent) and 429/503 answers with a short Retry-After (the provider says it did not run it) are retried.

Synchronous callers (the Test action in a page view, the tests) go through `run_sync()`, which uses the
server's loop when there is one and otherwise a loop of its own whose sessions it closes afterwards.
"""

import asyncio
import contextvars
import email.utils
import json
import logging
import socket
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from asgiref.sync import async_to_sync
from django.conf import settings
from multidict import CIMultiDictProxy
from yarl import URL

from core.stalls import StallWatch

from .addresses import address_allowed, parse_ip

logger = logging.getLogger(__name__)

CONNECT_RETRIES = 2  # attempts after the first when the connection could not be opened
CONNECT_BACKOFF = 0.05  # seconds before the first connect retry; doubles each time
RETRY_AFTER_MAX = 2.0  # a 429/503 asking to wait longer than this is passed on, not waited for
RETRY_AFTER_STATUSES = (429, 503)
RETRY_AFTER_RETRIES = 2
KEEPALIVE_EXPIRY = 30.0  # idle provider connections are closed after this long
DEFAULT_HEADERS = {"User-Agent": "llm-connections-gateway/1"}
READ_CHUNK = 64 * 1024
MAX_ERROR_BODY = 64 * 1024  # of an error answer: enough for its message

T = TypeVar("T")


class AddressRefused(Exception):
    """The host resolves to a private, loopback, link-local or metadata address that is not allowed."""

    def __init__(self, host: str, address: str):
        self.host = host
        self.address = address
        super().__init__(
            f"Refused to connect to '{host}': it resolves to a private, loopback, link-local or metadata "
            "address. Add the host to ALLOWED_PRIVATE_HOSTS if this server should reach it."
        )


class AnswerTooLarge(Exception):
    """The provider's answer is larger than GATEWAY_MAX_RESPONSE_BYTES: it was not read further."""

    def __init__(self, limit: int):
        self.limit = limit
        super().__init__(f"The provider's answer is larger than {limit} bytes.")


# What a call can fail with before any usable answer: every one is mapped by errors.from_transport_error.
TRANSPORT_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError, AddressRefused, AnswerTooLarge)


# --- The address guard ----------------------------------------------------------------------------------


class GuardedResolver(AbstractResolver):
    """Resolves with the system resolver, then refuses the host if any address it gives is not allowed."""

    def __init__(self, *, allow_loopback: bool):
        self.allow_loopback = allow_loopback
        self._resolver = ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        results = await self._resolver.resolve(host, port, family)
        for result in results:
            if not address_allowed(host, result["host"], allow_loopback=self.allow_loopback):
                raise AddressRefused(host, result["host"])
        return results

    async def close(self) -> None:
        await self._resolver.close()


def check_literal_address(url: URL, *, allow_loopback: bool) -> None:
    """A URL naming an IP address is checked here: connections to literal addresses skip the resolver."""
    host = url.raw_host or ""
    if parse_ip(host) is not None and not address_allowed(host, host, allow_loopback=allow_loopback):
        raise AddressRefused(host, host)


# --- Sessions, one set per event loop -------------------------------------------------------------------

_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle takes tens of milliseconds: once per process is enough (contexts are shareable)."""
    global _ssl_context
    if _ssl_context is None:
        _ssl_context = ssl.create_default_context()
    return _ssl_context


@dataclass
class Sessions:
    """A loop's provider sessions, one per address policy."""

    by_policy: dict[bool, aiohttp.ClientSession] = field(default_factory=dict)

    def get(self, allow_loopback: bool) -> aiohttp.ClientSession:
        session = self.by_policy.get(allow_loopback)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=settings.GATEWAY_UPSTREAM_CONNECTIONS,
                limit_per_host=0,
                keepalive_timeout=KEEPALIVE_EXPIRY,
                resolver=GuardedResolver(allow_loopback=allow_loopback),
                ssl=shared_ssl_context(),
                ttl_dns_cache=10,
            )
            session = self.by_policy[allow_loopback] = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),
                headers=DEFAULT_HEADERS,
                trust_env=False,
                raise_for_status=False,
                auto_decompress=True,
            )
        return session

    async def close(self) -> None:
        sessions, self.by_policy = list(self.by_policy.values()), {}
        for session in sessions:
            await session.close()


_loops: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sessions]" = weakref.WeakKeyDictionary()
_server_loops: "weakref.WeakSet[asyncio.AbstractEventLoop]" = weakref.WeakSet()


def serve_on_running_loop() -> None:
    """Mark the running loop as a server's: its sessions live until the server closes them (lifespan)."""
    _server_loops.add(asyncio.get_running_loop())


def sessions() -> Sessions:
    """The running loop's sessions, created on first use."""
    loop = asyncio.get_running_loop()
    found = _loops.get(loop)
    if found is None:
        found = _loops[loop] = Sessions()
    return found


async def close_sessions() -> None:
    """Close the running loop's provider connections (server shutdown, tests)."""
    found = _loops.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()


def run_sync(function: Callable[..., Awaitable[T]], *args, **kwargs) -> T:
    """Run a provider call from synchronous code: on the server's loop when a server runs one, else on a loop
    of its own, whose sessions are closed before returning."""

    async def call_and_tidy_up() -> T:
        owned = asyncio.get_running_loop() not in _server_loops
        try:
            return await function(*args, **kwargs)
        finally:
            if owned:
                await close_sessions()

    return async_to_sync(call_and_tidy_up)()


# --- Answers --------------------------------------------------------------------------------------------


class UpstreamResponse:
    """A provider's answer: status and headers at once; the body read whole and bounded, or streamed."""

    def __init__(self, raw: aiohttp.ClientResponse, *, method: str, url: str):
        self.raw = raw
        self.status_code = raw.status
        self.headers: CIMultiDictProxy[str] = raw.headers
        self.method = method
        self.url = url
        self.content = b""

    def __repr__(self) -> str:
        return f"<UpstreamResponse {self.status_code}>"

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300

    @property
    def is_closed(self) -> bool:
        """Whether the connection was let go (closed, or back in the pool)."""
        return self.raw.closed

    @property
    def media_type(self) -> str:
        return self.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def json(self) -> object:
        return json.loads(self.content)

    async def read(self, limit: int | None = None) -> bytes:
        """The whole body, at most `limit` bytes (GATEWAY_MAX_RESPONSE_BYTES by default): AnswerTooLarge beyond."""
        limit = settings.GATEWAY_MAX_RESPONSE_BYTES if limit is None else limit
        declared = self.raw.content_length
        if declared is not None and declared > limit:
            self.close()
            raise AnswerTooLarge(limit)
        parts, size = [], 0
        try:
            while True:
                part = await self.raw.content.read(READ_CHUNK)
                if not part:
                    break
                size += len(part)
                if size > limit:
                    raise AnswerTooLarge(limit)
                parts.append(part)
        except BaseException:
            self.close()
            raise
        self.content = b"".join(parts)
        self.raw.release()
        return self.content

    async def read_at_most(self, limit: int) -> bytes:
        """Up to `limit` bytes of the body, then the connection is let go (error answers)."""
        parts, size = [], 0
        try:
            while size < limit:
                part = await self.raw.content.read(min(READ_CHUNK, limit - size))
                if not part:
                    break
                parts.append(part)
                size += len(part)
        finally:
            self.close()
        self.content = b"".join(parts)
        return self.content

    async def iter_bytes(self) -> AsyncIterator[bytes]:
        """The body's bytes as they arrive (however the network cut them).

        A read that waits GATEWAY_TIMEOUT for the provider fails as aiohttp's `sock_read` timeout fails it
        (SocketTimeoutError), watched by one timer for the whole body (core.stalls) instead of the timer
        aiohttp re-arms on every packet received: a stream is read for minutes, a packet at a time.
        """
        content, connection = self.raw.content, self.raw.connection
        if connection is None or connection.protocol is None:  # the body is all here already
            while data := await content.readany():
                yield data
            return
        # aiohttp's timer off (start_timeout() with no timeout cancels the one armed); the next request on
        # this connection sets its own.
        connection.protocol.read_timeout = None
        connection.protocol.start_timeout()
        loop = asyncio.get_running_loop()
        reads = StallWatch(loop, settings.GATEWAY_TIMEOUT, lambda: content.set_exception(
            aiohttp.SocketTimeoutError("Timeout on reading data from socket")))
        try:
            while True:
                reads.since = loop.time()
                data = await content.readany()
                reads.since = None
                if not data:
                    return
                yield data
        finally:
            reads.stop()

    async def iter_lines(self) -> AsyncIterator[str]:
        """The body's lines as they arrive, without their line ends (`\\n`, `\\r\\n` or `\\r`)."""
        pending = b""
        async for data in self.iter_bytes():
            pending += data
            lines = pending.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            pending = lines.pop()
            for line in lines:
                yield line.decode("utf-8", errors="replace")
        if pending:
            yield pending.decode("utf-8", errors="replace")

    def close(self) -> None:
        """Let go of the connection; one whose body was not read to the end is closed, never reused."""
        self.raw.close()


# --- Sending --------------------------------------------------------------------------------------------


def timeouts() -> aiohttp.ClientTimeout:
    """Connect (waiting for a pooled connection included) and read (between bytes, so long streams live)."""
    return aiohttp.ClientTimeout(
        total=None, connect=settings.GATEWAY_CONNECT_TIMEOUT, sock_connect=settings.GATEWAY_CONNECT_TIMEOUT,
        sock_read=settings.GATEWAY_TIMEOUT,
    )


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds to wait (delta-seconds or an HTTP date), or None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - time.time())


# Requests sent to providers for the call being served, retries included (a caller counting them sets a
# fresh [0] in its context: count_requests()); sign-in requests for an access token are not counted.
REQUESTS_SENT: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("requests_sent", default=None)


def count_requests() -> list[int]:
    """From now on in this context, each provider request sent adds one to the returned counter."""
    counter = [0]
    REQUESTS_SENT.set(counter)
    return counter


async def send(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    json_body: object = None,
    content: bytes | None = None,
    params: Mapping[str, str] | None = None,
    data: Mapping[str, str] | None = None,
    stream: bool = False,
    allow_loopback: bool = False,
    counted: bool = True,
) -> UpstreamResponse:
    """Send one provider request; the body is read (bounded) unless `stream` (then the caller closes it).

    `counted`: False for a sign-in (an access token request), which count_requests() leaves out.

    `json_body` is sent as JSON, `data` as a form (OAuth token requests), `content` as exact bytes (a signed
    body). Raises aiohttp.ClientError subclasses and asyncio.TimeoutError (connect, read, protocol),
    AddressRefused or AnswerTooLarge; HTTP error statuses come back as responses for errors.py to map.
    """
    try:
        # As built: adapters quote every part themselves, and a signed request must go out byte for byte.
        target = URL(url, encoded=True)
        if params:
            target = target.extend_query(params)
    except (ValueError, TypeError):
        raise aiohttp.InvalidURL("the connection's address") from None
    check_literal_address(target, allow_loopback=allow_loopback)
    session = sessions().get(allow_loopback)
    connect_retries = retry_after_retries = 0
    counter = REQUESTS_SENT.get() if counted else None
    while True:
        if counter is not None:
            counter[0] += 1
        try:
            raw = await session.request(
                method, target, headers=headers, json=json_body, data=content if content is not None else data,
                allow_redirects=False, timeout=timeouts(), auto_decompress=not stream,
            )
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as error:
            if isinstance(error, aiohttp.ClientConnectorError) and isinstance(error.os_error, AddressRefused):
                raise error.os_error from None
            # Nothing reached the provider, so trying again cannot run the request twice.
            if connect_retries >= CONNECT_RETRIES:
                raise
            delay = CONNECT_BACKOFF * 2**connect_retries
            connect_retries += 1
            logger.warning(
                "Could not connect to %s (%s); retrying in %.2fs (retry %d of %d).",
                target.host, type(error).__name__, delay, connect_retries, CONNECT_RETRIES,
            )
            await asyncio.sleep(delay)
            continue
        response = UpstreamResponse(raw, method=method, url=str(target))
        if response.status_code in RETRY_AFTER_STATUSES and retry_after_retries < RETRY_AFTER_RETRIES:
            delay = retry_after_seconds(response.headers.get("Retry-After"))
            if delay is not None and delay <= RETRY_AFTER_MAX:
                response.close()
                retry_after_retries += 1
                logger.warning(
                    "%s answered %d with Retry-After %.2fs; retrying (retry %d of %d).",
                    target.host, response.status_code, delay, retry_after_retries, RETRY_AFTER_RETRIES,
                )
                await asyncio.sleep(delay)
                continue
        if not response.is_success:
            await response.read_at_most(MAX_ERROR_BODY)  # enough for a message, bounded for memory and redaction
        elif not stream:
            await response.read()
        return response
