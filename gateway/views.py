"""The gateway's HTTP routes: OpenAI-shaped in, OpenAI-shaped out, every error as `{"error": {...}}`.

Plain Django views rather than DRF: each call is one token lookup, one endpoint query and the upstream
call, and nothing else on the hot path. Credentials are read from the connection on every call, so a
rotated key is used by the next call in every server process.
"""

import json
import time
from collections.abc import Callable
from functools import wraps

from cryptography.fernet import InvalidToken
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from encrypted_model_fields import fields as encrypted_fields

from config.names import could_name_something
from connections.models import Connection
from endpoints.models import Endpoint

from . import errors
from .lookup import Caller, caller_for, endpoint_named
from .adapters import adapter_for
from .adapters.base import require_task
from .errors import GatewayError

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
    caller = caller_for(token.strip(), permission=PERMISSION) if scheme.lower() == "bearer" else None
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
    endpoint = endpoint_named(name) if could_name_something(name) else None
    if endpoint is None:
        raise GatewayError(404, errors.INVALID_REQUEST, "endpoint_not_found",
                           f"There is no endpoint named '{name[:64]}'.")
    if not endpoint.enabled:
        raise GatewayError(403, errors.INVALID_REQUEST, "endpoint_disabled", f"Endpoint '{endpoint.name}' is disabled.")
    return endpoint


def call(endpoint: Endpoint, body: object) -> HttpResponse:
    """Send the body to the endpoint's provider; a stream is relayed as it arrives."""
    result = adapter_for(endpoint.connection.provider).invoke(endpoint.connection, endpoint, body)
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


# How many of the most recently written secrets /healthz reads to judge the configured keys.
HEALTH_SAMPLE = 5


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and the configured keys encrypt, decrypt and read recent secrets.

    A configured key set that reads none of the most recently written secrets is a misconfigured server
    (503, so a load balancer takes it out). One connection no key decrypts is that connection's problem,
    not the server's: it answers its own 503 on the gateway while the others keep working, so health stays
    200 and `rotate_encryption_key --check` names it.
    """
    checks = {"database": "ok", "encryption": "ok"}
    recent: list[Connection] = []
    try:
        recent = list(Connection.objects.order_by("-secrets_updated_at").only("id", "name", "secrets")[:HEALTH_SAMPLE])
    except Exception:  # noqa: BLE001 - any database failure means unhealthy; its text may carry a DSN
        checks["database"] = "unavailable"
    try:
        probe = str(time.time())
        if encrypted_fields.decrypt_str(encrypted_fields.encrypt_str(probe).decode()) != probe:
            raise InvalidToken
        if recent and not any(connection.secrets_decryptable for connection in recent):
            raise InvalidToken
    except InvalidToken:
        checks["encryption"] = "the configured FIELD_ENCRYPTION_KEY does not decrypt the stored secrets"
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503)
