"""The gateway's routes: OpenAI-shaped in, OpenAI-shaped out, every error as `{"error": {...}}`.

Each call is one token lookup and one endpoint read (on the database threads, core/db_threads.py, so a
stream never holds a connection), then the provider calls on the event loop: a primary destination chosen by
weight, then fallbacks in order on the failures the endpoint falls back on (gateway/routing.py), all within
the endpoint's deadline. Credentials are read from the connections on every call, so a rotated key is used
by the next call in every server process.
"""

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Prefetch
from django.utils import timezone

from connections.models import Connection
from connections.secrets import SecretsUnavailable
from core.asgi_http import (
    Answer, BodyTooLarge, ClientGone, Request, Send, json_answer, send_stream, wait_for_disconnect,
)
from core.db_threads import DatabaseThreads
from core.names import could_name_something
from endpoints.models import Destination, Endpoint, Route
from providers import client, errors, upstream
from providers.account import Account
from providers.adapters.base import EventStream
from providers.errors import GatewayError
from tokens.authentication import bearer_token
from teams.models import team_ids_of
from tokens.models import ApiToken, Caller
from usage import recorder as usage
from usage.meter import MeteredStream, note_answer

from .limits import NOTHING_TO_COUNT, Admission, add_tokens, admit, limits_of

from . import routing

logger = logging.getLogger("gateway")

PERMISSION = "endpoints.view_endpoint"
MAX_BODY_BYTES = 20 * 1024 * 1024  # room for images sent inline as base64
# A lone UTF-16 surrogate escape (`"\ud800"`) parses as JSON but cannot be sent on as UTF-8.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]|\\u[dD][c-fC-F]")
TOTAL_TOKENS = re.compile(rb'"total_tokens"\s*:\s*(\d{1,18})')

T = TypeVar("T")


class InFlight:
    """The calls this process is serving now (gateway/app.py counts them)."""

    calls = 0


# The database reads hold the loop (core/db_threads.py) only while the process serves at most this many calls:
# measured, the hold paid at 8 calls in flight a process and lengthened the slowest first chunks at 512 streams.
HOLD_MOST_CALLS_IN_FLIGHT = 32
DATABASE = DatabaseThreads("gateway-db", settings.GATEWAY_DATABASE_THREADS,
                           hold_loop_seconds=settings.GATEWAY_DATABASE_HOLD_SECONDS,
                           hold_while=lambda: InFlight.calls <= HOLD_MOST_CALLS_IN_FLIGHT)


def error_answer(error: GatewayError) -> Answer:
    headers = dict(error.headers())
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return json_answer(error.status, error.body(), headers)


# --- The steps of a call ---------------------------------------------------------------------------------


async def authenticate(request: Request, *, token: str | None = None) -> Caller:
    """The token's caller, who must be allowed to view endpoints; 401 or 403 otherwise.

    `token`: one a route found elsewhere than `Authorization: Bearer` (a provider SDK's own key header)."""
    token = token or bearer_token(request.header("authorization"))
    caller = await DATABASE.run(ApiToken.caller, token, permission=PERMISSION) if token else None
    return checked_caller(caller)


def checked_caller(caller: Caller | None) -> Caller:
    """The caller a token lookup found, noted for usage; 401 or 403 when it may not call the gateway."""
    if caller is not None:
        note_caller(caller)
    if (refused := refusal_of(caller)) is not None:
        raise refused
    return caller


def refusal_of(caller: Caller | None) -> GatewayError | None:
    """Why the caller a token lookup found may not call the gateway (401 or 403), or None."""
    if caller is None:
        return GatewayError(401, errors.AUTHENTICATION, "invalid_api_key",
                            "Send a valid API token as 'Authorization: Bearer <token>'.")
    if not caller.may_call:
        return GatewayError(403, "permission_error", "permission_denied",
                            f"This token's user lacks the {PERMISSION} permission.")
    if not caller.may_use_gateway:
        return GatewayError(403, "permission_error", "token_scope",
                            "This token is limited to reading the API; it cannot call the gateway.")
    return None


def note_caller(caller: Caller) -> None:
    if (call := usage.current()) is not None:
        call.token_id, call.user_id = caller.token_id, caller.user_id


async def read_json_body(request: Request) -> object:
    try:
        raw = await request.body(MAX_BODY_BYTES)
    except BodyTooLarge:
        raise GatewayError(413, errors.INVALID_REQUEST, "body_too_large",
                           f"The request body is larger than {MAX_BODY_BYTES} bytes.") from None
    try:
        body = json.loads(raw)
        if SURROGATE_ESCAPE.search(raw):
            json.dumps(body, ensure_ascii=False).encode()  # raises on a lone surrogate
    except (ValueError, RecursionError, UnicodeError):
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_json", "The request body is not valid JSON.") from None
    return body


def endpoint_for_call(name: str, caller: Caller, task: str | None) -> tuple[Endpoint, Admission]:
    """The endpoint the caller may call now, counted against its limits: one trip to a database thread.

    Raises the call's GatewayError: unknown, not the token's, disabled, the wrong task, or over a limit.
    """
    # An endpoint of a team the caller is not in is not found, exactly as one that does not exist.
    endpoint = (Endpoint.objects.for_call(name, user_id=None if caller.all_teams else caller.user_id, shared=True)
                if could_name_something(name) else None)
    if endpoint is None:
        raise GatewayError(404, errors.INVALID_REQUEST, "endpoint_not_found",
                           f"There is no endpoint named '{name[:64]}'.")
    if caller.endpoint_limited and not ApiToken.may_call_endpoint(caller.token_id, endpoint.pk):
        raise GatewayError(403, "permission_error", "endpoint_not_allowed",
                           f"This token may not call endpoint '{endpoint.name}'.")
    if not endpoint.enabled:
        raise GatewayError(403, errors.INVALID_REQUEST, "endpoint_disabled", f"Endpoint '{endpoint.name}' is disabled.")
    if task is not None:
        require_task(endpoint, task)
    limits = [*limits_of(caller, f"token:{caller.token_id}", "this token"),
              *limits_of(endpoint, f"endpoint:{endpoint.pk}", f"endpoint '{endpoint.name}'")]
    return endpoint, admit(limits, timezone.now()) if limits else NOTHING_TO_COUNT


def require_name(name: object) -> None:
    if not isinstance(name, str) or not name:
        raise GatewayError(400, errors.INVALID_REQUEST, "model_required", "Name the endpoint to call in 'model'.")


async def find_endpoint(name: object, caller: Caller, task: str | None = None) -> tuple[Endpoint, Admission]:
    require_name(name)
    endpoint, admission = await DATABASE.run(endpoint_for_call, name, caller, task)
    note_endpoint(endpoint)
    return endpoint, admission


def note_endpoint(endpoint: Endpoint) -> None:
    if (noted := usage.current()) is not None:
        noted.endpoint_id, noted.endpoint = endpoint.pk, endpoint.name


def require_task(endpoint: Endpoint, task: str) -> None:
    """A 400 when a route for one task is called with an endpoint serving the other."""
    if endpoint.task != task:
        raise GatewayError(
            400, errors.INVALID_REQUEST, "wrong_task", f"Endpoint '{endpoint.name}' serves {endpoint.task}, not {task}."
        )


def record_use(connection: Connection) -> None:
    """Bookkeeping must not fail a call the provider already answered."""
    try:
        connection.touch_last_used()
    except DatabaseError as error:
        logger.warning("Connection %s: could not record its last use (%s).", connection.name, type(error).__name__)


def total_tokens(answer: bytes) -> int:
    """The tokens the provider reports an answer (or a stream's chunk) used: `usage.total_tokens`, in the OpenAI
    shape every answer is given; 0 when it reports none. Read without parsing the whole answer again (a quote
    inside a JSON string is escaped, so only a key can match)."""
    match = TOTAL_TOKENS.search(answer)
    return int(match.group(1)) if match else 0


class TokenCountingStream:
    """Relays a stream unchanged, noting the usage a provider reports in it (OpenAI sends it in the last chunk
    when asked with `stream_options.include_usage`; a stream without it counts no tokens)."""

    def __init__(self, events: EventStream):
        self.events = events
        self.tokens = 0

    def __aiter__(self) -> "TokenCountingStream":
        return self

    async def __anext__(self) -> bytes:
        chunk = await self.events.__anext__()
        if b'"total_tokens"' in chunk:
            self.tokens = total_tokens(chunk) or self.tokens
        return chunk

    async def aclose(self) -> None:
        await self.events.aclose()


def record_use_soon(connection: Connection) -> None:
    """Record the connection's use off the call's path."""
    DATABASE.start(record_use, connection)


async def route_call(endpoint: Endpoint, attempt: Callable[[Route], Awaitable[T]]) -> tuple[T, dict[str, str]]:
    """`attempt` on the endpoint's destinations until one answers (or a failure the endpoint does not fall back
    on, or its deadline): the answer, and the route headers naming the destination that gave it.

    A stream falls back only until its provider has answered: once the answer has begun, the client has its
    first byte and a failure is the stream's error event.
    """
    routes = routing.plan(endpoint, timezone.now())
    if not routes:
        raise GatewayError(503, errors.UNAVAILABLE, "endpoint_without_destinations",
                           f"Endpoint '{endpoint.name}' has no destination to call.")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + endpoint.deadline_seconds
    failures: list[tuple[Route, GatewayError]] = []
    bookkeeping: list[asyncio.Future] = []
    try:
        for route in routes:
            try:
                async with asyncio.timeout_at(deadline):
                    answer = await attempt(route)
            except TimeoutError:
                failures.append((route, routing.deadline_passed(endpoint)))
                raise routing.all_failed(failures) from None
            except GatewayError as error:
                failures.append((route, error))
                # Worth writing when the endpoint has somewhere else to send calls meanwhile.
                if len(endpoint.routes) > 1 and (seconds := routing.cooldown_seconds(error)) is not None:
                    bookkeeping.append(DATABASE.start(start_cooldown, route.destination, seconds))
                if routing.failure_class(error) not in endpoint.fallback_on or len(failures) == len(routes):
                    raise routing.all_failed(failures) from None
                continue
            break
    finally:
        if bookkeeping:
            await asyncio.gather(*bookkeeping)
    connection = route.connection()
    if connection.last_used_is_stale():
        record_use_soon(connection)
    return answer, routing.route_headers(route, len(failures) + 1)


def account_of(route: Route) -> Account:
    """The destination's connection's current credentials (noted as the call's destination: the usage record
    names the one tried last, which answered or failed last); 503 when they cannot be read."""
    if (noted := usage.current()) is not None:
        noted.connection_id, noted.provider = route.connection_id, route.connection().provider
        noted.model = route.destination.model
    try:
        return route.connection().account()
    except SecretsUnavailable as error:
        # 503, not 500: the stored secrets need an operator (a re-entered key or the missing encryption key).
        raise GatewayError(503, errors.UNAVAILABLE, "connection_secrets_unavailable", str(error)) from None


async def call(request: Request, send: Send, endpoint: Endpoint, body: object,
               admission: Admission = NOTHING_TO_COUNT) -> Answer | None:
    """Send the body to the endpoint's destinations (`route_call`) with each connection's current key; a stream
    is relayed as it arrives (then nothing is returned: it was sent)."""
    noted = usage.current()
    hide_usage = False

    async def attempt(route: Route) -> bytes | EventStream:
        nonlocal hide_usage
        account = account_of(route)
        sent = body
        if noted is not None:
            sent, hide_usage = ask_for_stream_usage(account, body)
        return await client.call(account, route.destination.target, sent)

    attempts = upstream.count_requests() if noted is not None else None
    try:
        answer, headers = await route_call(endpoint, attempt)
    finally:
        if attempts is not None:
            noted.attempts = attempts[0]
    if isinstance(answer, EventStream):
        # Budgets count what the provider reports (the raw events); usage records what the client was sent.
        counting = TokenCountingStream(answer) if admission.counts_tokens else None
        stream = counting or answer
        if noted is not None:
            noted.status, noted.stream = 200, True
            stream = MeteredStream(stream, noted, hide_usage_event=hide_usage)
        try:
            await relay(request, send, stream, headers)
        finally:
            if counting is not None and counting.tokens:
                add_tokens(admission, counting.tokens)
        return None
    if admission.counts_tokens and (tokens := total_tokens(answer)):
        add_tokens(admission, tokens)  # in memory: written off the call's path (gateway/limits.py)
    if noted is not None:
        note_answer(noted, answer)
    return Answer(200, answer, headers=headers)


def ask_for_stream_usage(account: Account, body: object) -> tuple[object, bool]:
    """A stream's body asking the provider to report usage where the catalogue says it can (and whether the
    gateway asked on the client's behalf: then the usage-only event is held back from the client)."""
    if (isinstance(body, dict) and body.get("stream") is True and "stream_options" not in body
            and account.method.id in account.provider.stream_usage_methods):
        return {**body, "stream_options": {"include_usage": True}}, True
    return body, False


def start_cooldown(destination: Destination, seconds: float) -> None:
    """Bookkeeping must not fail a call: a cooldown not written only means the next call tries it again."""
    try:
        destination.start_cooldown(seconds)
    except DatabaseError as error:
        logger.warning("Destination %s: could not record its cooldown (%s).", destination.label, type(error).__name__)


async def relay(request: Request, send: Send, events: EventStream | MeteredStream,
                headers: dict[str, str] | None = None) -> None:
    """The stream to the client until it ends, the client goes away or stops reading; the provider's
    request is closed at once either way."""
    streaming = asyncio.ensure_future(
        send_stream(send, request, events, write_timeout=settings.GATEWAY_TIMEOUT, headers=headers)
    )
    gone = asyncio.ensure_future(wait_for_disconnect(request.receive))
    try:
        await asyncio.wait({streaming, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (streaming, gone):
            task.cancel()
        await asyncio.gather(streaming, gone, return_exceptions=True)  # stopped before the stream is closed
        await events.aclose()
    if streaming.done() and not streaming.cancelled() and (error := streaming.exception()) is not None:
        if not isinstance(error, (TimeoutError, OSError, ClientGone)):
            raise error


# --- The routes -------------------------------------------------------------------------------------------


async def invocations(request: Request, send: Send, caller: Caller, endpoint_name: str) -> Answer | None:
    """`POST /gateway/<endpoint>/invocations`: the endpoint's own task, OpenAI-style body."""
    endpoint, admission = await find_endpoint(endpoint_name, caller)
    return await call(request, send, endpoint, await read_json_body(request), admission)


def openai_route(task: str):
    """`POST /gateway/v1/<task route>` where `model` names the endpoint, as the OpenAI SDKs send it.

    A body of a declared length up to SMALL_BODY_BYTES (nearly every call; it came with the headers) is read
    first, and the token and the endpoint are then looked up in one trip to a database thread. The answer is
    the one the steps in turn would give: a bad token is a 401 whatever the body. A larger or chunked body is
    read only once the token is known good."""

    async def view(request: Request, send: Send) -> Answer | None:
        if not small_body(request):
            caller = await authenticate(request)
            body = await read_json_body(request)
            endpoint, admission = await find_endpoint(model_of(body), caller, task)
            return await call(request, send, endpoint, body, admission)
        try:
            body, unreadable = await read_json_body(request), None
        except GatewayError as error:
            body, unreadable = None, error
        token = bearer_token(request.header("authorization"))
        name = model_of(body) if unreadable is None else None
        caller, found = await DATABASE.run(caller_and_endpoint, token, name, task) if token else (None, None)
        checked_caller(caller)
        if unreadable is not None:
            raise unreadable
        require_name(name)
        if isinstance(found, GatewayError):
            raise found
        endpoint, admission = found
        note_endpoint(endpoint)
        return await call(request, send, endpoint, body, admission)

    view.authenticates = True
    return view


SMALL_BODY_BYTES = 64 * 1024


def small_body(request: Request) -> bool:
    declared = request.header("content-length")
    return declared.isdigit() and int(declared) <= SMALL_BODY_BYTES


def model_of(body: object) -> object:
    return body.get("model") if isinstance(body, dict) else None


def caller_and_endpoint(token: str, name: object, task: str) -> tuple[Caller | None,
                                                                    tuple[Endpoint, Admission] | GatewayError | None]:
    """On a database thread: the token's caller and, when it may call and `name` could name an endpoint, the
    endpoint for the call (or the GatewayError finding it raised); None where a step was not reached."""
    caller = ApiToken.caller(token, permission=PERMISSION)
    if refusal_of(caller) is not None or not isinstance(name, str) or not name:
        return caller, None
    try:
        return caller, endpoint_for_call(name, caller, task)
    except GatewayError as error:
        return caller, error


chat_completions = openai_route("chat")
embeddings = openai_route("embeddings")


def enabled_endpoints(caller: Caller) -> list[dict]:
    """Each enabled endpoint the caller may call, owned by its first primary destination's provider."""
    destinations = Destination.objects.select_related("connection").only("endpoint_id", "connection__provider")
    endpoints = Endpoint.objects.filter(enabled=True)
    if not caller.all_teams:
        endpoints = endpoints.filter(team_id__in=team_ids_of(caller.user_id))
    if caller.endpoint_limited:
        endpoints = endpoints.filter(pk__in=ApiToken.endpoints.through.objects.filter(apitoken_id=caller.token_id)
                                     .values("endpoint_id"))
    endpoints = endpoints.only("name", "created_at").order_by("name").prefetch_related(
        Prefetch("destinations", queryset=destinations.order_by("position"))
    )
    return [
        {"id": e.name, "object": "model", "created": int(e.created_at.timestamp()),
         "owned_by": next((d.connection.provider for d in e.destinations.all()), "")}
        for e in endpoints
    ]


async def models(request: Request, send: Send, caller: Caller) -> Answer:
    """`GET /gateway/v1/models`: the enabled endpoints the token may call, as OpenAI lists models."""
    return json_answer(200, {"object": "list", "data": await DATABASE.run(enabled_endpoints, caller)})
