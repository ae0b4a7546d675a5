"""The gateway's HTTP routes: OpenAI-shaped in, OpenAI-shaped out, every error as `{"error": {...}}`.

Plain Django views rather than DRF: each call is one token lookup, one endpoint query and the upstream
call, and nothing else on the hot path. Credentials are read from the connection on every call, so a
rotated key is used by the next call in every server process.
"""

import json
import logging
from collections.abc import Callable
from functools import wraps

from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt

from connections.models import Connection
from connections.secrets import SecretsUnavailable
from core.names import could_name_something
from endpoints.models import Endpoint
from providers import client, errors
from providers.errors import GatewayError
from tokens.models import ApiToken, Caller

logger = logging.getLogger("gateway")

PERMISSION = "endpoints.view_endpoint"
MAX_BODY_BYTES = 20 * 1024 * 1024  # room for images sent inline as base64


def error_response(error: GatewayError) -> JsonResponse:
    response = JsonResponse(error.body(), status=error.status)
    for name, value in error.headers().items():
        response[name] = value
    if error.status == 401:
        response["WWW-Authenticate"] = "Bearer"
    return response


def gateway_route(method: str) -> Callable:
    """Check the method, authenticate the Bearer token, run the view; any GatewayError becomes its JSON answer."""

    def decorate(view: Callable) -> Callable:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                if request.method != method:
                    raise GatewayError(405, errors.INVALID_REQUEST, "method_not_allowed", f"Use {method}.")
                authenticate(request)
                return view(request, *args, **kwargs)
            except GatewayError as error:
                response = error_response(error)
                if error.status == 405:
                    response["Allow"] = method
                return response

        return wrapper

    return decorate


def authenticate(request: HttpRequest) -> Caller:
    """The token's caller, who must be allowed to view endpoints; 401 or 403 otherwise."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    caller = ApiToken.caller(token.strip(), permission=PERMISSION) if scheme.lower() == "bearer" else None
    if caller is None:
        raise GatewayError(401, errors.AUTHENTICATION, "invalid_api_key",
                           "Send a valid API token as 'Authorization: Bearer <token>'.")
    if not caller.may_call:
        raise GatewayError(403, "permission_error", "permission_denied",
                           f"This token's user lacks the {PERMISSION} permission.")
    return caller


def read_json_body(request: HttpRequest) -> object:
    try:
        if int(request.headers.get("Content-Length") or 0) > MAX_BODY_BYTES:
            raise RequestDataTooBig
        raw = request.read(MAX_BODY_BYTES + 1)
    except (RequestDataTooBig, ValueError):
        raise GatewayError(413, errors.INVALID_REQUEST, "body_too_large",
                           f"The request body is larger than {MAX_BODY_BYTES} bytes.") from None
    if len(raw) > MAX_BODY_BYTES:
        raise GatewayError(413, errors.INVALID_REQUEST, "body_too_large",
                           f"The request body is larger than {MAX_BODY_BYTES} bytes.")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_json", "The request body is not valid JSON.") from None


def find_endpoint(name: object) -> Endpoint:
    if not isinstance(name, str) or not name:
        raise GatewayError(400, errors.INVALID_REQUEST, "model_required",
                           "Name the endpoint to call in 'model'.")
    endpoint = Endpoint.objects.for_call(name) if could_name_something(name) else None
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


def call(endpoint: Endpoint, body: object) -> HttpResponse:
    """Send the body to the endpoint's provider with its connection's current key; a stream is relayed as it arrives."""
    connection = endpoint.connection
    try:
        account = connection.account()
    except SecretsUnavailable as error:
        # 503, not 500: the stored secrets need an operator (a re-entered key or the missing encryption key).
        raise GatewayError(503, errors.UNAVAILABLE, "connection_secrets_unavailable", str(error)) from None
    result = client.call(account, endpoint.target, body)
    record_use(connection)
    if isinstance(result, dict):
        return JsonResponse(result)
    response = StreamingHttpResponse(result, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # proxies such as nginx must not buffer the events
    return response


@gateway_route("POST")
def invocations(request: HttpRequest, endpoint_name: str) -> HttpResponse:
    """`POST /gateway/<endpoint>/invocations`: the endpoint's own task, OpenAI-style body."""
    endpoint = find_endpoint(endpoint_name)
    return call(endpoint, read_json_body(request))


def openai_route(task: str) -> Callable:
    """`POST /gateway/v1/<task route>` where `model` names the endpoint, as the OpenAI SDKs send it."""

    @gateway_route("POST")
    def view(request: HttpRequest) -> HttpResponse:
        body = read_json_body(request)
        endpoint = find_endpoint(body.get("model") if isinstance(body, dict) else None)
        require_task(endpoint, task)
        return call(endpoint, body)

    return view


chat_completions = openai_route("chat")
embeddings = openai_route("embeddings")


def record_use(connection: Connection) -> None:
    """Bookkeeping must not fail a call the provider already answered."""
    try:
        connection.touch_last_used()
    except DatabaseError as error:
        logger.warning("Connection %s: could not record its last use (%s).", connection.name, type(error).__name__)


@gateway_route("GET")
def models(request: HttpRequest) -> HttpResponse:
    """`GET /gateway/v1/models`: the enabled endpoints, as OpenAI lists models."""
    endpoints = Endpoint.objects.filter(enabled=True).select_related("connection").order_by("name")
    return JsonResponse(
        {
            "object": "list",
            "data": [
                {"id": e.name, "object": "model", "created": int(e.created_at.timestamp()),
                 "owned_by": e.connection.provider}
                for e in endpoints
            ],
        }
    )
