"""What every provider adapter does: read the connection's credentials at call time, call, answer in OpenAI's shape.

A subclass says how to address and authenticate its provider (`build_call`, `build_check_call`) and, when
the provider does not speak OpenAI's format, how to translate (`parse_response`, `relay_stream`).
Everything else, including the error mapping, redaction and `last_used_at`, is shared here.
"""

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx
from django.db import DatabaseError

from connections.models import Connection
from connections.providers import PROVIDERS
from connections.secrets import SecretsUnavailable
from endpoints.models import Endpoint

from .. import errors, upstream
from ..errors import GatewayError
from ..usage import touch_last_used

logger = logging.getLogger("gateway")

MAX_ERROR_BODY = 64 * 1024
DONE_EVENT = b"data: [DONE]\n\n"
ENDS_WITH_DONE = re.compile(rb"data:\s?\[DONE\]\s*$")


@dataclass
class UpstreamCall:
    """One provider request, built by an adapter: keys go in `headers`, never in `url` or `params`."""

    method: str
    url: str
    headers: dict[str, str] = field(default_factory=dict)
    json: object = None
    params: dict[str, str] | None = None
    stream: bool = False
    data: dict[str, str] | None = None  # a form body (OAuth token requests), instead of `json`
    content: bytes | None = None  # exact body bytes instead of `json` (a signed body)


class CredentialsCheck(NamedTuple):
    """The Test action's result: whether the provider accepted the credentials, its HTTP status, a message."""

    ok: bool
    status: int | None
    message: str


def accept_headers(stream: bool) -> dict[str, str]:
    """What to ask a provider for: JSON, or server-sent events unencoded so each one is handled as it arrives."""
    if stream:
        return {"Accept": "text/event-stream", "Accept-Encoding": "identity"}
    return {"Accept": "application/json"}


def validate_body(task: str, body: object) -> dict:
    """An OpenAI-style request body for `task`, or a 400 that says what is wrong with it."""
    if not isinstance(body, dict):
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "The request body must be a JSON object.")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "'stream' must be true or false.")
    if task == "chat":
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise GatewayError(
                400, errors.INVALID_REQUEST, "invalid_body", "A chat request needs 'messages': a non-empty list."
            )
    elif task == "embeddings":
        value = body.get("input")
        if not (isinstance(value, str) and value) and not (isinstance(value, list) and value):
            raise GatewayError(
                400,
                errors.INVALID_REQUEST,
                "invalid_body",
                "An embeddings request needs 'input': a string or a non-empty list.",
            )
        if stream:
            raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "Embeddings cannot be streamed.")
    return body


def require_task(endpoint: Endpoint, task: str) -> None:
    """A 400 when a route for one task is called with an endpoint serving the other."""
    if endpoint.task != task:
        raise GatewayError(
            400,
            errors.INVALID_REQUEST,
            "wrong_task",
            f"Endpoint '{endpoint.name}' serves {endpoint.task}, not {task}.",
        )


def read_secrets(connection: Connection) -> dict[str, str]:
    """The connection's secrets as stored right now; 503 when no configured key decrypts them."""
    try:
        return connection.get_secrets()
    except SecretsUnavailable as error:
        raise errors.from_secrets_unavailable(error) from None


class Adapter:
    """Calls one provider for gateway endpoints; stateless, one instance serves every thread."""

    def supports(self, connection: Connection) -> None:
        """Raise a GatewayError when this adapter cannot call with the connection's auth method."""

    def allow_loopback(self, connection: Connection) -> bool:
        """Whether this provider may live on the gateway's own machine (Ollama, local OpenAI-compatible servers)."""
        return False

    def build_call(
        self, connection: Connection, endpoint: Endpoint, body: dict, secrets: dict[str, str]
    ) -> UpstreamCall:
        raise NotImplementedError

    def build_check_call(self, connection: Connection, secrets: dict[str, str]) -> UpstreamCall:
        raise NotImplementedError

    def parse_response(self, endpoint: Endpoint, document: object) -> dict:
        """The provider's JSON answer in OpenAI's shape (identity for OpenAI-speaking providers)."""
        if not isinstance(document, dict):
            raise GatewayError(
                502, errors.UPSTREAM, "upstream_invalid_response", "The provider's answer is not a JSON object."
            )
        return document

    # --- The call --------------------------------------------------------------------------------------

    def invoke(self, connection: Connection, endpoint: Endpoint, body: object) -> dict | Iterator[bytes]:
        """Call the endpoint's model with the connection's current credentials.

        Returns the OpenAI-shaped answer, or for `"stream": true` an iterator of SSE bytes that ends with
        `data: [DONE]`. Raises GatewayError for everything SPEC §6's table lists.
        """
        body = validate_body(endpoint.task, body)
        self.supports(connection)
        secrets = read_secrets(connection)
        call = self.build_call(connection, endpoint, body, secrets)
        response = self.send(connection, call, secrets)
        record_use(connection)
        if call.stream:
            return self.relay_stream(connection, response)
        try:
            document = response.json()
        except ValueError:
            raise errors.invalid_response(self.label(connection)) from None
        return self.parse_response(endpoint, document)

    def test_credentials(self, connection: Connection) -> CredentialsCheck:
        """Call the provider's cheapest authenticated route with the same credential code as traffic."""
        try:
            self.supports(connection)
            secrets = read_secrets(connection)
            response = self.send(connection, self.build_check_call(connection, secrets), secrets)
        except GatewayError as error:
            return CredentialsCheck(False, error.upstream_status, error.message)
        return CredentialsCheck(True, response.status_code, f"{self.label(connection)} accepted the credentials.")

    def send(self, connection: Connection, call: UpstreamCall, secrets: dict[str, str]) -> httpx.Response:
        """Send through the pooled transport; a 2xx response comes back, anything else as a GatewayError."""
        provider = self.label(connection)
        try:
            response = upstream.send(
                call.method,
                call.url,
                headers=call.headers,
                json=call.json,
                params=call.params,
                stream=call.stream,
                allow_loopback=self.allow_loopback(connection),
                data=call.data,
                content=call.content,
            )
        except (httpx.TransportError, upstream.AddressRefused) as error:
            failure = errors.from_transport_error(error, provider=provider)
            logger.warning("Connection %s: %s (%s)", connection.name, failure.code, type(error).__name__)
            raise failure from None
        if response.is_success:
            return response
        try:
            body = read_limited(response) if call.stream else response.content
        except httpx.TransportError as error:
            raise errors.from_transport_error(error, provider=provider) from None
        finally:
            response.close()
        failure = errors.from_upstream_response(
            response.status_code, response.headers, body, secrets=secrets.values(), provider=provider
        )
        logger.warning(
            "Connection %s: provider answered %d, answering %d %s: %s",
            connection.name, response.status_code, failure.status, failure.code, failure.message,
        )
        raise failure

    def relay_stream(self, connection: Connection, response: httpx.Response) -> "EventStream":
        """Server-sent events passed through as they arrive, always ending with `data: [DONE]`."""
        return EventStream(response, relay_events(response, provider=self.label(connection), name=connection.name))

    @staticmethod
    def label(connection: Connection) -> str:
        provider = PROVIDERS.get(connection.provider)
        return provider.label if provider else connection.provider


def record_use(connection: Connection) -> None:
    """Bookkeeping must not fail a call the provider already answered."""
    try:
        touch_last_used(connection)
    except DatabaseError as error:
        logger.warning("Connection %s: could not record its last use (%s).", connection.name, type(error).__name__)


def read_limited(response: httpx.Response) -> bytes:
    """At most MAX_ERROR_BODY bytes of a streamed error answer: enough for a message, bounded for memory."""
    body = b""
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) >= MAX_ERROR_BODY:
            break
    return body[:MAX_ERROR_BODY]


class EventStream:
    """An SSE byte iterator whose close() also releases the provider connection, even if never iterated."""

    def __init__(self, response: httpx.Response, events: Iterator[bytes]):
        self.response = response
        self.events = events

    def __iter__(self) -> Iterator[bytes]:
        return self.events

    def __next__(self) -> bytes:
        return next(self.events)

    def close(self) -> None:
        self.events.close()
        self.response.close()


def relay_events(response: httpx.Response, *, provider: str, name: str) -> Iterator[bytes]:
    """The provider's chunks as they come; a broken stream ends with an OpenAI error event; then [DONE]."""
    tail = b""
    try:
        for chunk in response.iter_bytes():
            if chunk:
                tail = (tail + chunk)[-64:]
                yield chunk
    except httpx.TransportError as error:
        failure = errors.from_transport_error(error, provider=provider)
        logger.warning("Connection %s: the stream broke off: %s", name, failure.code)
        yield event_separator(tail) + b"data: " + json.dumps(failure.body()).encode() + b"\n\n"
        tail = b"\n\n"
    finally:
        response.close()
    if not ENDS_WITH_DONE.search(tail):
        yield event_separator(tail) + DONE_EVENT


def event_separator(tail: bytes) -> bytes:
    """What completes the last event so that the next line starts a new one."""
    if not tail or tail.endswith(b"\n\n"):
        return b""
    return b"\n" if tail.endswith(b"\n") else b"\n\n"
