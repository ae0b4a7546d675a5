"""Google Vertex AI with a service account key: an OAuth access token per key, Gemini's format for chat.

The key file's JSON is turned into an access token with the JWT-bearer grant at the key's `token_uri`: the
assertion is signed by google-auth's signer, and the token call goes through the product's own guarded
client, so it obeys the same address rules as every provider call. Tokens are cached per process for each
(account, key version) until shortly before they expire (providers/oauth.py): N calls obtain one token, and
a rotated key obtains a new one at once. Chat uses the Gemini translation (providers/adapters/gemini.py);
embeddings Vertex's `:predict`.
"""

import asyncio
import json
import logging
import time
from urllib.parse import quote, urlencode

from google.auth import crypt, jwt

from .. import errors, upstream
from ..account import Account
from ..errors import GatewayError
from ..oauth import TOKENS
from ..upstream import TRANSPORT_ERRORS, UpstreamResponse
from . import anthropic, gemini, translate
from .base import Adapter, EventStream, Target, UpstreamCall, accept_headers

logger = logging.getLogger("gateway")

SCOPES = "https://www.googleapis.com/auth/cloud-platform"
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
TOKEN_SERVICE = "Google's OAuth token service"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 3600  # seconds, as google-auth asks for
DEFAULT_LIFETIME = 300.0  # when the token service does not say how long a token lives
TOKEN_ATTEMPTS = 3  # issuing a token changes nothing: a 5xx is worth trying again (google-auth tries 3 times)
TOKEN_RETRY_DELAY = 0.1
# Claude on Vertex AI takes Anthropic's Messages body with this version in it instead of a `model`.
ANTHROPIC_VERSION = "vertex-2023-10-16"


# --- Tokens -------------------------------------------------------------------------------------------


async def access_token(account: Account) -> str:
    """The service account's access token, cached for this version of its key."""
    return await TOKENS.get(account.cache_key(), lambda: obtain_token(account, key_info(account)))


def forget_token(account: Account) -> None:
    """The provider refused a cached token before its time: the next call obtains a fresh one."""
    TOKENS.forget(account.cache_key())


def key_info(account: Account) -> dict:
    """The stored key file as a dict, or a 503 saying that it cannot be used."""
    try:
        info = json.loads(account.secrets.get("service_account_json", ""))
    except ValueError:
        info = None
    if not isinstance(info, dict) or not info.get("client_email") or not info.get("private_key"):
        raise unusable_key(account, "it is not a service account key file's JSON")
    return {**info, "token_uri": info.get("token_uri") or DEFAULT_TOKEN_URI}


def unusable_key(account: Account, why: str) -> GatewayError:
    return GatewayError(
        503,
        errors.UNAVAILABLE,
        "connection_credentials_invalid",
        f"The service account key of connection '{account.name}' cannot be used: {why}. Paste the key file again.",
    )


def grant_assertion(account: Account, info: dict) -> bytes:
    """The signed JWT that asks the token service for an access token (what google-auth's credentials send)."""
    try:
        signer = crypt.RSASigner.from_service_account_info(info)
    except (ValueError, TypeError, KeyError):
        raise unusable_key(account, "its private_key is not a valid PEM private key") from None
    now = int(time.time())
    payload = {"iss": info["client_email"], "aud": info["token_uri"], "scope": SCOPES,
               "iat": now, "exp": now + ASSERTION_LIFETIME}
    return jwt.encode(signer, payload)


async def obtain_token(account: Account, info: dict) -> tuple[str, float]:
    """An access token for the key, from its token service (the JWT-bearer grant)."""
    form = urlencode({"grant_type": JWT_BEARER, "assertion": grant_assertion(account, info).decode()}).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    for attempt in range(1, TOKEN_ATTEMPTS + 1):
        try:
            response = await upstream.send("POST", info["token_uri"], headers=headers, content=form,
                                           counted=False)
        except TRANSPORT_ERRORS as error:
            failure = errors.from_transport_error(error, provider=TOKEN_SERVICE)
            logger.warning("Connection %s: no access token: %s", account.name, failure.code)
            raise failure from None
        if response.status_code < 500 or attempt == TOKEN_ATTEMPTS:
            break
        await asyncio.sleep(TOKEN_RETRY_DELAY * attempt)
    if not response.is_success:
        failure = token_refused(response, info)
        logger.warning("Connection %s: no access token: %s (HTTP %s)",
                       account.name, failure.code, failure.upstream_status)
        raise failure
    try:
        document = response.json()
        token = document["access_token"]
        lifetime = float(document.get("expires_in") or DEFAULT_LIFETIME)
    except (ValueError, TypeError, KeyError, AttributeError):
        raise GatewayError(502, errors.UPSTREAM, "upstream_invalid_response",
                           f"{TOKEN_SERVICE} sent an answer that could not be read.") from None
    if not isinstance(token, str) or not token:
        raise GatewayError(502, errors.UPSTREAM, "upstream_invalid_response",
                           f"{TOKEN_SERVICE} answered without an access token.")
    return token, lifetime


def token_refused(response: UpstreamResponse, info: dict) -> GatewayError:
    """The token call's failures as the gateway answers them: a refused key is a 401 upstream_credentials_rejected;
    429 and 5xx as for any provider answer."""
    secrets = [value for value in info.values() if isinstance(value, str)]
    message, _ = errors.provider_error_parts(response.content)
    message = errors.safe_message(message, secrets)
    if response.status_code in (400, 401, 403):
        failure = errors.credentials_rejected(response.status_code, message, provider=TOKEN_SERVICE)
    else:
        failure = errors.map_status(response.status_code, response.headers, message, "", provider=TOKEN_SERVICE)
    failure.upstream_status = response.status_code
    return failure


# --- The adapter --------------------------------------------------------------------------------------


class VertexAIAdapter(Adapter):
    """Gemini models on Vertex AI, called with an access token of the connection's service account."""

    async def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        headers = await self.auth_headers(account)
        model_url = f"{project_base(account)}/publishers/google/models/{quote(target.model, safe='')}"
        if target.task == "embeddings":
            return UpstreamCall("POST", f"{model_url}:predict", {**headers, "Accept": "application/json"},
                                predict_request(body))
        return gemini.translated_call(model_url, target, body, headers)

    async def build_check_call(self, account: Account) -> UpstreamCall:
        headers = {**await self.auth_headers(account), "Accept": "application/json"}
        return UpstreamCall("GET", f"{project_base(account)}/endpoints", headers, params={"pageSize": "1"})

    # Anthropic's Messages API for Claude models on Vertex AI (`rawPredict`): the answer and stream are
    # Anthropic's own.
    native_apis = tuple(anthropic.NATIVE_PATHS)
    native_failure_event = anthropic.AnthropicAdapter.native_failure_event

    async def build_forward_call(self, account: Account, target: Target, api: str, body: dict,
                                 headers: dict[str, str]) -> UpstreamCall:
        stream = body.get("stream") is True
        call_headers = {**await self.auth_headers(account), **accept_headers(stream)}
        if headers.get("anthropic-beta"):
            call_headers["anthropic-beta"] = headers["anthropic-beta"]
        models = f"{project_base(account)}/publishers/anthropic/models"
        payload = {"anthropic_version": ANTHROPIC_VERSION, **body}
        if api == "anthropic.count_tokens":
            return UpstreamCall("POST", f"{models}/count-tokens:rawPredict", call_headers, payload)
        del payload["model"]
        method = "streamRawPredict" if stream else "rawPredict"
        return UpstreamCall("POST", f"{models}/{quote(target.model, safe='@')}:{method}", call_headers, payload,
                            stream=stream)

    async def auth_headers(self, account: Account) -> dict[str, str]:
        return {"Authorization": f"Bearer {await access_token(account)}"}

    async def send(
        self, account: Account, call: UpstreamCall, *, redact_also: tuple[str, ...] = ()
    ) -> UpstreamResponse:
        bearer = call.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            return await super().send(account, call, redact_also=(*redact_also, bearer))
        except GatewayError as error:
            if error.upstream_status == 401:
                forget_token(account)  # revoked early: the next call obtains a fresh token
            raise

    def parse_response(self, target: Target, document: object) -> dict:
        if target.task == "embeddings":
            return predict_response(target.model, document)
        return gemini.chat_response(target.model, document)

    def relay_stream(
        self, account: Account, target: Target, response: UpstreamResponse, *, include_usage: bool = False
    ) -> EventStream:
        events = gemini.translate_stream(response, model="", provider=account.label, name=account.name,
                                         include_usage=include_usage)
        return EventStream(response, events, account)


def project_base(account: Account) -> str:
    project = quote(account.config_value("project_id"), safe="")
    location = quote(account.config_value("location"), safe="")
    return f"{account.base_url()}/v1/projects/{project}/locations/{location}"


def predict_request(body: dict) -> dict:
    """An OpenAI embeddings body as Vertex's text-embedding `:predict` request."""
    inputs = translate.embedding_inputs(body["input"])
    if not inputs:
        raise GatewayError(400, errors.INVALID_REQUEST, "invalid_body", "Vertex AI embeds text: give 'input' as strings.")
    request: dict = {"instances": [{"content": text} for text in inputs]}
    if body.get("dimensions"):
        request["parameters"] = {"outputDimensionality": body["dimensions"]}
    return request


def predict_response(model: str, document: object) -> dict:
    """`{"predictions": [{"embeddings": {"values", "statistics"}}]}` as an OpenAI embeddings list."""
    predictions = document.get("predictions") if isinstance(document, dict) else None
    if not isinstance(predictions, list) or not all(isinstance(item, dict) for item in predictions):
        raise gemini.invalid("Vertex AI's embeddings answer has no 'predictions' list.")
    vectors, tokens_used = [], 0
    for item in predictions:
        embeddings = item.get("embeddings") or {}
        vectors.append(embeddings.get("values") or [])
        tokens_used += int((embeddings.get("statistics") or {}).get("token_count") or 0)
    return translate.embeddings(model=model, vectors=vectors, usage_=translate.usage(tokens_used, 0))
