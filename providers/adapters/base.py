"""What every provider adapter does: call with an account's credentials, answer in OpenAI's shape.

A subclass says how to address and authenticate its provider (`build_call`, `build_check_call`) and, when
the provider does not speak OpenAI's format, how to translate (`parse_response`, `relay_stream`).
Everything else, including the error mapping and redaction, is shared here. Adapters work on plain values
(an Account, a Target): they never see a database row.
"""

import json
import logging
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from core import redaction

from .. import errors, upstream
from . import translate
from ..account import Account
from ..catalogue import TASKS
from ..errors import GatewayError
from ..upstream import TRANSPORT_ERRORS, UpstreamResponse

logger = logging.getLogger("gateway")

DONE_EVENT = b"data: [DONE]\n\n"
ENDS_WITH_DONE = re.compile(rb"data:\s?\[DONE\]\s*$")
# What each line of an event stream may start with (the SSE fields, a comment, or nothing).
SSE_LINE = re.compile(rb"(?:data|event|id|retry)(?::|\r?$)|:|\r?$")
# Whole lines each of which SSE_LINE matches, in one pass: a field with its value, a bare field name, a
# comment, or a blank line, each ended by "\n".
SSE_LINES = re.compile(rb"(?:(?:(?:data|event|id|retry)(?::[^\n]*|\r?)|:[^\n]*|\r?)\n)*")
STREAM_TYPES = ("text/event-stream",)


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

    # The content types this adapter's provider answers a stream request with.
    stream_types: tuple[str, ...] = STREAM_TYPES

    async def invoke(self, account: Account, target: Target, body: object) -> "dict | EventStream":
        """Call the target model with the account's credentials.

        Returns the OpenAI-shaped answer, or for `"stream": true` an async iterator of SSE bytes that ends
        with `data: [DONE]`. Raises GatewayError for everything else (README.md, Gateway, lists the answers).
        """
        body = validate_body(target.task, body)
        self.supports(account)
        call = await self.build_call(account, target, body)
        response = await self.send(account, call)
        if call.stream:
            if response.media_type not in self.stream_types:
                response.close()
                raise errors.not_a_stream(account.label, response.media_type)
            return self.relay_stream(account, target, response, include_usage=translate.wants_usage(body))
        try:
            document = response.json()
        except ValueError:
            raise errors.invalid_response(account.label) from None
        return self.parse_response(target, document)

    async def test_credentials(self, account: Account) -> CredentialsCheck:
        """Call the provider's cheapest authenticated route with the same credential code as traffic."""
        try:
            self.supports(account)
            response = await self.send(account, await self.build_check_call(account))
        except GatewayError as error:
            return CredentialsCheck(False, error.upstream_status, error.message)
        return CredentialsCheck(True, response.status_code, f"{account.label} accepted the credentials.")

    async def send(self, account: Account, call: UpstreamCall, *, redact_also: tuple[str, ...] = ()) -> UpstreamResponse:
        """Send through the pooled session; a 2xx response comes back, anything else as a GatewayError.

        `redact_also`: secrets of this call beyond the account's own (an access token it obtained).
        """
        provider = account.label
        try:
            response = await upstream.send(
                call.method,
                call.url,
                headers=call.headers,
                json_body=call.json,
                params=call.params,
                stream=call.stream,
                allow_loopback=account.provider.local,
                data=call.data,
                content=call.content,
            )
        except TRANSPORT_ERRORS as error:
            failure = errors.from_transport_error(error, provider=provider)
            logger.warning("Connection %s: %s (%s)", account.name, failure.code, type(error).__name__)
            raise failure from None
        if response.is_success:
            return response
        failure = errors.from_upstream_response(
            response.status_code, response.headers, response.content,
            secrets=[*account.values_to_redact(), *redact_also], provider=provider,
        )
        logger.warning(
            "Connection %s: provider answered %d, answering %d %s: %s",
            account.name, response.status_code, failure.status, failure.code, failure.message,
        )
        raise failure

    # --- Native pass-through (the provider's own API, unchanged but for the model and the credentials) -----

    # The provider APIs this adapter forwards as they are (e.g. "anthropic.messages", "openai.responses").
    native_apis: tuple[str, ...] = ()

    async def forward(self, account: Account, target: Target, api: str, body: dict,
                      headers: dict[str, str]) -> "bytes | EventStream":
        """Send a request in the provider's own format to its own route, with the endpoint's model and the
        account's credentials, and hand back its answer as it came (bytes, redacted) or its event stream.

        `headers`: the caller's headers this API defines (a version, beta flags), passed on as they are.
        A provider error is a GatewayError, as for translated calls.
        """
        if api not in self.native_apis:
            raise GatewayError(400, errors.INVALID_REQUEST, "wrong_provider",
                               f"{account.label} endpoints cannot be called through this route.")
        self.supports(account)
        call = await self.build_forward_call(account, target, api, {**body, "model": target.model}, headers)
        response = await self.send(account, call)
        if not call.stream:
            return redact_answer(account, response.content)
        return self.relay_native(account, response)

    def relay_native(self, account: Account, response: UpstreamResponse) -> "EventStream":
        """A native stream relayed line by line as it comes (server-sent events, no [DONE] added)."""
        if response.media_type not in STREAM_TYPES:
            response.close()
            raise errors.not_a_stream(account.label, response.media_type)
        events = relay_events(response, provider=account.label, name=account.name, done=False,
                              failure_event=self.native_failure_event)
        return EventStream(response, events, account)

    async def build_forward_call(self, account: Account, target: Target, api: str, body: dict,
                                 headers: dict[str, str]) -> UpstreamCall:
        raise NotImplementedError

    def native_failure_event(self, failure: GatewayError) -> bytes:
        """How a native stream that breaks off ends: an error event as the provider would send one."""
        return b"event: error\n" + sse_bytes(failure.body())

    def relay_stream(
        self, account: Account, target: Target, response: UpstreamResponse, *, include_usage: bool = False
    ) -> "EventStream":
        """Server-sent events passed through as they arrive, always ending with `data: [DONE]`.

        `include_usage`: the request asked for the usage chunk (a translating adapter writes it; a provider
        that speaks OpenAI's API was sent the option and answers it itself)."""
        return EventStream(response, relay_events(response, provider=account.label, name=account.name), account)


class EventStream:
    """An async iterator of SSE bytes whose aclose() also lets go of the provider connection, iterated or not.

    Every chunk it hands on is whole lines (events are only dispatched at a blank line, so holding back a
    partial line delays nothing a client sees), which is what lets it replace any form of the account's
    secrets that a provider echoes, however the network cut the bytes.
    """

    def __init__(self, response: UpstreamResponse, events: AsyncIterator[bytes], account: Account):
        self.response = response
        self.events = events
        self.secrets = wire_secrets(account)

    def __aiter__(self) -> "EventStream":
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.events.__anext__()
        return chunk if self.secrets is None else self.secrets.redact(chunk)

    async def aclose(self) -> None:
        try:
            await self.events.aclose()
        finally:
            self.response.close()


def wire_secrets(account: Account) -> redaction.WireSecrets | None:
    return redaction.wire_secrets(tuple(account.values_to_redact()))


def redact_answer(account: Account, body: bytes) -> bytes:
    """An answer's bytes with every form of the account's secrets replaced (one pass, only if one is there)."""
    secrets = wire_secrets(account)
    return body if secrets is None else secrets.redact(body)


def event_stream_prefix(lines: bytes) -> int:
    """How many bytes of these whole lines are ones an event stream may hold (a field, a comment, a blank line)."""
    if SSE_LINES.fullmatch(lines):
        return len(lines)  # the usual case, checked in one pass
    good = 0
    for line in lines.split(b"\n")[:-1]:
        if not SSE_LINE.match(line):
            break
        good += len(line) + 1
    return good


async def relay_events(
    response: UpstreamResponse, *, provider: str, name: str, done: bool = True,
    failure_event: Callable[[GatewayError], bytes] | None = None,
) -> AsyncIterator[bytes]:
    """The provider's events as they come, in whole lines, each checked to be an event stream's; anything
    else, or a stream that breaks off, ends with an error event (OpenAI's, or `failure_event`'s); then
    [DONE] unless `done` is false (a provider API whose streams have no such end)."""
    failure_event = failure_event or (lambda failure: sse_bytes(failure.body()))
    tail = pending = b""
    try:
        async for chunk in response.iter_bytes():
            pending += chunk
            cut = pending.rfind(b"\n") + 1
            if not cut:
                continue
            lines, pending = pending[:cut], pending[cut:]
            good = event_stream_prefix(lines)
            if good:
                tail = (tail + lines[:good])[-64:]
                yield lines[:good]
            if good < len(lines):
                failure = errors.invalid_stream(provider)
                logger.warning("Connection %s: the provider's stream is not an event stream.", name)
                yield event_separator(tail) + failure_event(failure)
                tail, pending = b"\n\n", b""
                break
    except TRANSPORT_ERRORS as error:
        failure = errors.from_transport_error(error, provider=provider)
        logger.warning("Connection %s: the stream broke off: %s", name, failure.code)
        yield event_separator(tail + pending) + failure_event(failure)
        tail, pending = b"\n\n", b""
    finally:
        response.close()
    if pending and event_stream_prefix(pending + b"\n") > len(pending):
        tail = (tail + pending)[-64:]
        yield pending
    if done and not ENDS_WITH_DONE.search(tail):
        yield event_separator(tail) + DONE_EVENT
    elif not done and (separator := event_separator(tail)):
        yield separator  # the provider's last event, completed


def sse_bytes(document: dict) -> bytes:
    return b"data: " + json.dumps(document).encode() + b"\n\n"


def event_separator(tail: bytes) -> bytes:
    """What completes the last event so that the next line starts a new one."""
    if not tail or tail.endswith(b"\n\n"):
        return b""
    return b"\n" if tail.endswith(b"\n") else b"\n\n"
