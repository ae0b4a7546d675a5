"""Native pass-through routes: a provider's own API, forwarded unchanged but for the model and the key.

Callers keep their provider SDK (Anthropic's, or OpenAI's Responses API) and swap only the key for a gateway
token and the address for the gateway's; `model` names an endpoint. The request goes to one of the endpoint's
destinations with its model and its connection's current key, and the answer (or its event stream) comes back
as the provider sent it, redacted. Token, permission, endpoint, body-size and routing rules (a primary chosen
by weight, then fallbacks in order) are the other routes'; errors come in the provider's own shape. A
destination whose provider does not speak the API refuses the call (400), which no fallback follows.
"""

from core.asgi_http import Answer, Request, Send, json_answer
from endpoints.models import Endpoint, Route
from providers import client, errors, upstream
from providers.adapters.anthropic import error_document as anthropic_error_document
from providers.adapters.base import EventStream
from providers.errors import GatewayError
from tokens.authentication import bearer_token
from tokens.models import Caller
from usage import recorder as usage
from usage.meter import note_answer

from . import views
from .limits import add_tokens

ANTHROPIC_HEADERS = ("anthropic-version", "anthropic-beta")


async def forward(request: Request, send: Send, caller: Caller, api: str, headers: dict[str, str]) -> Answer | None:
    """Send the caller's body to the endpoint it names in `model`; a stream is relayed as it arrives (then
    nothing is returned: it was sent). Limits are the other routes'; a budget counts the `total_tokens` an
    answer reports (the Responses API's usage has it; Anthropic's does not)."""
    body = await views.read_json_body(request)
    if not isinstance(body, dict):
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "The request body must be a JSON object.")
    endpoint: Endpoint
    endpoint, admission = await views.find_endpoint(body.get("model"), caller, "chat")

    async def attempt(route: Route) -> bytes | EventStream:
        return await client.forward(views.account_of(route), route.destination.target, api, body, headers)

    noted = usage.current()
    attempts = upstream.count_requests() if noted is not None else None
    try:
        answer, route_headers = await views.route_call(endpoint, attempt)
    finally:
        if attempts is not None:
            noted.attempts = attempts[0]
    if isinstance(answer, EventStream):
        counting = views.TokenCountingStream(answer) if admission.counts_tokens else None
        try:
            await views.relay(request, send, counting or answer, route_headers)
        finally:
            if counting is not None and counting.tokens:
                add_tokens(admission, counting.tokens)
        return None
    if admission.counts_tokens and (tokens := views.total_tokens(answer)):
        add_tokens(admission, tokens)
    if noted is not None:
        note_answer(noted, answer)
    return Answer(200, answer, headers=route_headers)


# --- Anthropic's Messages API ------------------------------------------------------------------------------


async def anthropic_authenticate(request: Request) -> Caller:
    """Our token where the Anthropic SDK puts its key (`x-api-key`), or as `Authorization: Bearer`."""
    authorization = request.header("authorization")
    token = bearer_token(authorization) if authorization else request.header("x-api-key").strip()
    return await views.authenticate(request, token=token or None)


def anthropic_error_answer(error: GatewayError) -> Answer:
    answer = views.error_answer(error)
    return json_answer(error.status, anthropic_error_document(error), answer.headers)


def anthropic_route(api: str):
    async def view(request: Request, send: Send, caller: Caller) -> Answer | None:
        headers = {name: request.header(name) for name in ANTHROPIC_HEADERS if request.header(name)}
        return await forward(request, send, caller, api, headers)

    view.authenticate = anthropic_authenticate
    view.error_answer = anthropic_error_answer
    return view


anthropic_messages = anthropic_route("anthropic.messages")
anthropic_count_tokens = anthropic_route("anthropic.count_tokens")


# --- OpenAI's Responses API --------------------------------------------------------------------------------


async def responses(request: Request, send: Send, caller: Caller) -> Answer | None:
    """`POST /gateway/v1/responses` for OpenAI-family endpoints (OpenAI, Azure OpenAI, compatible servers)."""
    return await forward(request, send, caller, "openai.responses", {})
