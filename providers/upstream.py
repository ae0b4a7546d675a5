"""The one way the product talks to providers: pooled keep-alive HTTP with timeouts, an address guard and safe retries.

Each process keeps one pooled keep-alive httpx transport per address policy (strict, or loopback allowed
for local servers such as Ollama), created lazily and shared by every thread. Calls go to the transport,
not through httpx.Client: the client's cookie jar, redirects, auth flows and environment proxies are
nothing a provider call wants (a shared cookie jar would even carry one connection's cookies into another's
calls), and skipping them saves CPU on every call (bench/upstream_client.py measures it).

The address guard lives in the connection layer: the host is resolved once, every resolved address is
checked (providers/addresses.py), and the socket is opened to the address that was checked, so a DNS answer that changes
between check and connect (rebinding) cannot slip through. TLS still verifies the certificate against
the host name.

Retries never repeat a request the provider may have executed: only failures to connect (nothing was
sent) and 429/503 answers with a short Retry-After (the provider says it did not run it) are retried.
"""

import email.utils
import logging
import os
import socket
import ssl
import threading
import time
from collections.abc import Iterable

import httpcore
import httpx
from django.conf import settings

from .addresses import is_allowed_private_host, is_public_ip, parse_ip

logger = logging.getLogger(__name__)
_lock = threading.RLock()  # re-entered: building a transport takes the SSL context

CONNECT_RETRIES = 2  # attempts after the first when the connection could not be opened
CONNECT_BACKOFF = 0.05  # seconds before the first connect retry; doubles each time
RETRY_AFTER_MAX = 2.0  # a 429/503 asking to wait longer than this is passed on, not waited for
RETRY_AFTER_STATUSES = (429, 503)
RETRY_AFTER_RETRIES = 2
MAX_CONNECTIONS = 100  # per process and address policy; gunicorn runs far fewer threads per worker
MAX_KEEPALIVE_CONNECTIONS = 32
KEEPALIVE_EXPIRY = 30.0  # idle sockets closed by the server are detected (readable) before reuse
DEFAULT_HEADERS = {"User-Agent": "llm-connections-gateway/1", "Accept-Encoding": "gzip, deflate"}


class AddressRefused(Exception):
    """The host resolves to a private, loopback, link-local or metadata address that is not allowed."""

    def __init__(self, host: str, address: str):
        self.host = host
        self.address = address
        super().__init__(
            f"Refused to connect to '{host}': it resolves to a private, loopback, link-local or metadata "
            "address. Add the host to ALLOWED_PRIVATE_HOSTS if this server should reach it."
        )


def address_allowed(host: str, address: str, *, allow_loopback: bool) -> bool:
    """At call time: public addresses, hosts or addresses the operator allowed, loopback for local servers."""
    ip = parse_ip(address)
    if ip is None:
        return False
    if is_public_ip(ip) or is_allowed_private_host(host) or is_allowed_private_host(str(ip)):
        return True
    mapped = getattr(ip, "ipv4_mapped", None)
    return allow_loopback and (ip.is_loopback or bool(mapped and mapped.is_loopback))


def resolve_allowed(host: str, port: int, *, allow_loopback: bool) -> list[str]:
    """Every address `host` resolves to, once; AddressRefused if any of them is not allowed."""
    literal = parse_ip(host)
    if literal is not None:
        addresses = [str(literal)]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError) as error:
            raise httpcore.ConnectError(f"Could not resolve the provider's host: {error}") from None
        addresses = list(dict.fromkeys(info[4][0] for info in infos))
    for address in addresses:
        if not address_allowed(host, address, allow_loopback=allow_loopback):
            raise AddressRefused(host, address)
    return addresses


class GuardedNetworkBackend(httpcore.NetworkBackend):
    """httpcore's blocking backend, connecting only to resolved addresses that passed the guard."""

    def __init__(self, *, allow_loopback: bool):
        self.allow_loopback = allow_loopback
        self._backend = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve_allowed(host, port, allow_loopback=self.allow_loopback)
        last_error: Exception | None = None
        for address in addresses:
            try:
                return self._backend.connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
        assert last_error is not None
        raise last_error

    def connect_unix_socket(self, path: str, timeout=None, socket_options=None) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("Unix sockets are not used for providers.")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport with a connection pool built on the guarded backend."""

    def __init__(self, *, allow_loopback: bool):
        # httpx builds its pool privately; building it here is the one way to hand it a network backend
        # (HTTPTransport keeps no other state, so its __init__ is not needed).
        self._pool = httpcore.ConnectionPool(
            ssl_context=shared_ssl_context(),
            max_connections=MAX_CONNECTIONS,
            max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS,
            keepalive_expiry=KEEPALIVE_EXPIRY,
            network_backend=GuardedNetworkBackend(allow_loopback=allow_loopback),
        )


_ssl_context: ssl.SSLContext | None = None


def shared_ssl_context() -> ssl.SSLContext:
    """Loading the CA bundle takes tens of milliseconds: once per process is enough (contexts are thread-safe)."""
    global _ssl_context
    if _ssl_context is None:
        with _lock:
            if _ssl_context is None:
                _ssl_context = httpx.create_ssl_context(trust_env=False)
    return _ssl_context


_transports: dict[bool, GuardedTransport] = {}


def get_transport(*, allow_loopback: bool = False) -> GuardedTransport:
    """This process's pooled transport for the address policy, created on first use, shared by all threads."""
    transport = _transports.get(allow_loopback)
    if transport is None:
        with _lock:
            transport = _transports.get(allow_loopback)
            if transport is None:
                transport = _transports[allow_loopback] = GuardedTransport(allow_loopback=allow_loopback)
    return transport


def forget_transports() -> None:
    """After fork: the child opens its own sockets instead of sharing the parent's."""
    _transports.clear()


def close_transports() -> None:
    """Close every pooled connection (tests and shutdown)."""
    with _lock:
        for transport in _transports.values():
            transport.close()
        _transports.clear()


os.register_at_fork(after_in_child=forget_transports)


def timeouts() -> dict[str, float]:
    """Read (between bytes of the answer, so long streams live) and connect timeouts, from settings."""
    read = settings.GATEWAY_TIMEOUT
    connect = settings.GATEWAY_CONNECT_TIMEOUT
    return {"connect": connect, "read": read, "write": read, "pool": connect}


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


def read_or_close(response: httpx.Response) -> None:
    """Read the whole answer (which returns the connection to the pool), or release it on failure."""
    try:
        response.read()
    except BaseException:
        response.close()
        raise


def send(
    method: str,
    url: str,
    *,
    headers: dict[str, str],
    json: object = None,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
    stream: bool = False,
    allow_loopback: bool = False,
    data: dict[str, str] | None = None,
) -> httpx.Response:
    """Send one provider request; the response's body is read unless `stream` (then the caller closes it).

    `data` is sent as a form (OAuth token requests), `json` as JSON.
    Raises httpx.TransportError subclasses (connect, timeout, protocol) or AddressRefused; HTTP error
    statuses come back as responses for errors.py to map. Redirects are never followed, no cookie is kept,
    and proxy variables and .netrc are ignored (nothing between us and the checked address). `content`
    sends exact body bytes instead of `json` (a signed body, a form).
    """
    transport = get_transport(allow_loopback=allow_loopback)
    request = httpx.Request(
        method, url, params=params, headers={**DEFAULT_HEADERS, **headers}, json=json, data=data, content=content,
        extensions={"timeout": timeouts()},
    )
    connect_retries = retry_after_retries = 0
    while True:
        try:
            response = transport.handle_request(request)
            response.request = request  # as httpx.Client does: adapters can see what was asked
            if not stream:
                read_or_close(response)
        except (httpx.ConnectError, httpx.ConnectTimeout) as error:
            # Nothing reached the provider, so trying again cannot run the request twice.
            if connect_retries >= CONNECT_RETRIES:
                raise
            delay = CONNECT_BACKOFF * 2**connect_retries
            connect_retries += 1
            logger.warning(
                "Could not connect to %s (%s); retrying in %.2fs (retry %d of %d).",
                request.url.host, type(error).__name__, delay, connect_retries, CONNECT_RETRIES,
            )
            time.sleep(delay)
            continue
        if response.status_code in RETRY_AFTER_STATUSES and retry_after_retries < RETRY_AFTER_RETRIES:
            delay = retry_after_seconds(response.headers.get("retry-after"))
            if delay is not None and delay <= RETRY_AFTER_MAX:
                response.close()
                retry_after_retries += 1
                logger.warning(
                    "%s answered %d with Retry-After %.2fs; retrying (retry %d of %d).",
                    request.url.host, response.status_code, delay, retry_after_retries, RETRY_AFTER_RETRIES,
                )
                time.sleep(delay)
                continue
        return response
