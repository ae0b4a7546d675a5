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
from providers import client, errors
from providers.adapters.base import EventStream
from providers.errors import GatewayError
from tokens.authentication import bearer_token
from tokens.models import ApiToken, Caller

from . import routing

logger = logging.getLogger("gateway")

PERMISSION = "endpoints.view_endpoint"
MAX_BODY_BYTES = 20 * 1024 * 1024  # room for images sent inline as base64
# A lone UTF-16 surrogate escape (`"\ud800"`) parses as JSON but cannot be sent on as UTF-8.
SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89abAB]|\\u[dD][c-fC-F]")

DATABASE = DatabaseThreads("gateway-db", settings.GATEWAY_DATABASE_THREADS)


def error_answer(error: GatewayError) -> Answer:
    headers = dict(error.headers())
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return json_answer(error.status, error.body(), headers)


# --- The steps of a call ---------------------------------------------------------------------------------


async def authenticate(request: Request) -> Caller:
    """The token's caller, who must be allowed to view endpoints; 401 or 403 otherwise."""
    token = bearer_token(request.header("authorization"))
    caller = await DATABASE.run(ApiToken.caller, token, permission=PERMISSION) if token else None
    if caller is None:
        raise GatewayError(401, errors.AUTHENTICATION, "invalid_api_key",
                           "Send a valid API token as 'Authorization: Bearer <token>'.")
    if not caller.may_call:
        raise GatewayError(403, "permission_error", "permission_denied",
                           f"This token's user lacks the {PERMISSION} permission.")
    return caller


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


def endpoint_for_call(name: str) -> Endpoint | None:
    return Endpoint.objects.for_call(name) if could_name_something(name) else None


async def find_endpoint(name: object) -> Endpoint:
    if not isinstance(name, str) or not name:
        raise GatewayError(400, errors.INVALID_REQUEST, "model_required", "Name the endpoint to call in 'model'.")
    endpoint = await DATABASE.run(endpoint_for_call, name)
    if endpoint is None:
        raise GatewayError(404, errors.INVALID_REQUEST, "endpoint_not_found",
                           f"There is no endpoint named '{name[:64]}'.")
    if not endpoint.enabled:
        raise GatewayError(403, errors.INVALID_REQUEST, "endpoint_disabled", f"Endpoint '{endpoint.name}' is disabled.")
    return endpoint


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


async def call(request: Request, send: Send, endpoint: Endpoint, body: object) -> Answer | None:
    """Send the body to the endpoint's destinations until one answers (or a failure the endpoint does not
    fall back on, or its deadline); a stream is relayed as it arrives (then nothing is returned: it was sent).

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
                    answer = await attempt(route, body)
            except TimeoutError:
                failures.append((route, routing.deadline_passed(endpoint)))
                raise routing.all_failed(failures) from None
            except GatewayError as error:
                failures.append((route, error))
                # Worth writing when the endpoint has somewhere else to send calls meanwhile.
                if len(endpoint.routes) > 1 and (seconds := routing.cooldown_seconds(error)) is not None:
                    bookkeeping.append(loop.create_task(DATABASE.run(start_cooldown, route.destination, seconds)))
                if routing.failure_class(error) not in endpoint.fallback_on or len(failures) == len(routes):
                    raise routing.all_failed(failures) from None
                continue
            break
    finally:
        if bookkeeping:
            await asyncio.gather(*bookkeeping)
    headers = routing.route_headers(route, len(failures) + 1)
    connection = route.connection()
    if connection.last_used_is_stale():
        loop.create_task(DATABASE.run(record_use, connection))
    if isinstance(answer, EventStream):
        await relay(request, send, answer, headers)
        return None
    return Answer(200, answer, headers=headers)


async def attempt(route: Route, body: object) -> bytes | EventStream:
    """One destination's answer, with its connection's current credentials."""
    try:
        account = route.connection().account()
    except SecretsUnavailable as error:
        # 503, not 500: the stored secrets need an operator (a re-entered key or the missing encryption key).
        raise GatewayError(503, errors.UNAVAILABLE, "connection_secrets_unavailable", str(error)) from None
    return await client.call(account, route.destination.target, body)


def start_cooldown(destination: Destination, seconds: float) -> None:
    """Bookkeeping must not fail a call: a cooldown not written only means the next call tries it again."""
    try:
        destination.start_cooldown(seconds)
    except DatabaseError as error:
        logger.warning("Destination %s: could not record its cooldown (%s).", destination.label, type(error).__name__)


async def relay(request: Request, send: Send, events: EventStream, headers: dict[str, str]) -> None:
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


async def invocations(request: Request, send: Send, endpoint_name: str) -> Answer | None:
    """`POST /gateway/<endpoint>/invocations`: the endpoint's own task, OpenAI-style body."""
    endpoint = await find_endpoint(endpoint_name)
    return await call(request, send, endpoint, await read_json_body(request))


def openai_route(task: str):
    """`POST /gateway/v1/<task route>` where `model` names the endpoint, as the OpenAI SDKs send it."""

    async def view(request: Request, send: Send) -> Answer | None:
        body = await read_json_body(request)
        endpoint = await find_endpoint(body.get("model") if isinstance(body, dict) else None)
        require_task(endpoint, task)
        return await call(request, send, endpoint, body)

    return view


chat_completions = openai_route("chat")
embeddings = openai_route("embeddings")


def enabled_endpoints() -> list[dict]:
    """Each enabled endpoint, owned by its first primary destination's provider."""
    destinations = Destination.objects.select_related("connection").only("endpoint_id", "connection__provider")
    endpoints = Endpoint.objects.filter(enabled=True).only("name", "created_at").order_by("name").prefetch_related(
        Prefetch("destinations", queryset=destinations.order_by("position"))
    )
    return [
        {"id": e.name, "object": "model", "created": int(e.created_at.timestamp()),
         "owned_by": next((d.connection.provider for d in e.destinations.all()), "")}
        for e in endpoints
    ]


async def models(request: Request, send: Send) -> Answer:
    """`GET /gateway/v1/models`: the enabled endpoints, as OpenAI lists models."""
    return json_answer(200, {"object": "list", "data": await DATABASE.run(enabled_endpoints)})
