"""What every provider adapter does: call with an account's credentials, answer in OpenAI's shape.

A subclass says how to address and authenticate its provider (`build_call`, `build_check_call`) and, when
the provider does not speak OpenAI's format, how to translate (`parse_response`, `relay_stream`).
Everything else, including the error mapping and redaction, is shared here. Adapters work on plain values
(an Account, a Target): they never see a database row.
"""

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

import httpx

from .. import errors, upstream
from ..account import Account
from ..catalogue import TASKS
from ..errors import GatewayError

logger = logging.getLogger("gateway")

MAX_ERROR_BODY = 64 * 1024
DONE_EVENT = b"data: [DONE]\n\n"
ENDS_WITH_DONE = re.compile(rb"data:\s?\[DONE\]\s*$")


@dataclass(frozen=True)
class Target:
    """What a call is for: the provider's model id and the task (an endpoint's, as plain values)."""

    model: str
    task: str


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
    spec = TASKS[task]
    value = body.get(spec.input_field)
    if not (isinstance(value, spec.input_types) and value):
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", spec.input_help)
    if stream and not spec.streams:
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", f"{spec.label} cannot be streamed.")
    return body


class Adapter:
    """Calls one provider; stateless, one instance serves every thread."""

    def supports(self, account: Account) -> None:
        """Raise a GatewayError when this adapter cannot call with the account's auth method."""

    def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        raise NotImplementedError

    def build_check_call(self, account: Account) -> UpstreamCall:
        raise NotImplementedError

    def parse_response(self, target: Target, document: object) -> dict:
        """The provider's JSON answer in OpenAI's shape (identity for OpenAI-speaking providers)."""
        if not isinstance(document, dict):
            raise GatewayError(
                502, errors.UPSTREAM, "upstream_invalid_response", "The provider's answer is not a JSON object."
            )
        return document

    # --- The call --------------------------------------------------------------------------------------

    def invoke(self, account: Account, target: Target, body: object) -> "dict | EventStream":
        """Call the target model with the account's credentials.

        Returns the OpenAI-shaped answer, or for `"stream": true` an iterator of SSE bytes that ends with
        `data: [DONE]`. Raises GatewayError for everything else (README.md, Gateway, lists the answers).
        """
        body = validate_body(target.task, body)
        self.supports(account)
        call = self.build_call(account, target, body)
        response = self.send(account, call)
        if call.stream:
            return self.relay_stream(account, target, response)
        try:
            document = response.json()
        except ValueError:
            raise errors.invalid_response(account.label) from None
        return self.parse_response(target, document)

    def test_credentials(self, account: Account) -> CredentialsCheck:
        """Call the provider's cheapest authenticated route with the same credential code as traffic."""
        try:
            self.supports(account)
            response = self.send(account, self.build_check_call(account))
        except GatewayError as error:
            return CredentialsCheck(False, error.upstream_status, error.message)
        return CredentialsCheck(True, response.status_code, f"{account.label} accepted the credentials.")

    def send(self, account: Account, call: UpstreamCall, *, redact_also: tuple[str, ...] = ()) -> httpx.Response:
        """Send through the pooled transport; a 2xx response comes back, anything else as a GatewayError.

        `redact_also`: secrets of this call beyond the account's own (an access token it obtained).
        """
        provider = account.label
        try:
            response = upstream.send(
                call.method,
                call.url,
                headers=call.headers,
                json=call.json,
                params=call.params,
                stream=call.stream,
                allow_loopback=account.provider.local,
                data=call.data,
                content=call.content,
            )
        except (httpx.TransportError, upstream.AddressRefused) as error:
            failure = errors.from_transport_error(error, provider=provider)
            logger.warning("Connection %s: %s (%s)", account.name, failure.code, type(error).__name__)
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
            response.status_code, response.headers, body, secrets=[*account.values_to_redact(), *redact_also],
            provider=provider,
        )
        logger.warning(
            "Connection %s: provider answered %d, answering %d %s: %s",
            account.name, response.status_code, failure.status, failure.code, failure.message,
        )
        raise failure

    def relay_stream(self, account: Account, target: Target, response: httpx.Response) -> "EventStream":
        """Server-sent events passed through as they arrive, always ending with `data: [DONE]`."""
        return EventStream(response, relay_events(response, provider=account.label, name=account.name))


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
