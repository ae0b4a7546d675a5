"""Google Vertex AI with a service account key: an OAuth access token per key, Gemini's format for chat.

The key file's JSON is turned into an access token by google-auth (the JWT-bearer grant at the key's
`token_uri`); the token call goes through the product's own guarded transport, so it obeys the same
address rules as every provider call. Tokens are cached per process for each (account, key version) until
shortly before they expire (providers/oauth.py): N calls obtain one token, and a rotated key obtains a new
one at once. Chat uses the Gemini translation (providers/adapters/gemini.py); embeddings Vertex's `:predict`.
"""

import json
import logging
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from google.auth import exceptions as google_exceptions
from google.auth import transport as google_transport
from google.oauth2 import service_account

from .. import errors, upstream
from ..account import Account
from ..errors import GatewayError
from ..oauth import TOKENS
from . import gemini, translate
from .base import Adapter, EventStream, Target, UpstreamCall

logger = logging.getLogger("gateway")

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
TOKEN_SERVICE = "Google's OAuth token service"
DEFAULT_LIFETIME = 300.0  # when the token service does not say how long a token lives


# --- google-auth over the gateway's transport ---------------------------------------------------------


class TokenResponse(google_transport.Response):
    """google-auth's view of an httpx answer."""

    def __init__(self, response: httpx.Response):
        self._response = response

    @property
    def status(self) -> int:
        return self._response.status_code

    @property
    def headers(self) -> dict[str, str]:
        return dict(self._response.headers)

    @property
    def data(self) -> bytes:
        return self._response.content


class TokenRequest(google_transport.Request):
    """google-auth's HTTP hook on the guarded pooled transport; remembers the last answer for error messages."""

    def __init__(self):
        self.response: httpx.Response | None = None
        self.failure: GatewayError | None = None

    def __call__(self, url, method="GET", body=None, headers=None, timeout=None, **kwargs) -> TokenResponse:
        try:
            self.response = upstream.send(method, url, headers=dict(headers or {}), content=body)
        except (httpx.TransportError, upstream.AddressRefused) as error:
            self.failure = errors.from_transport_error(error, provider=TOKEN_SERVICE)
            raise google_exceptions.TransportError(self.failure.code) from None
        return TokenResponse(self.response)


# --- Tokens -------------------------------------------------------------------------------------------


def access_token(account: Account) -> str:
    """The service account's access token, cached for this version of its key."""
    return TOKENS.get(account.cache_key(), lambda: obtain_token(account, key_info(account)))


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


def obtain_token(account: Account, info: dict) -> tuple[str, float]:
    """An access token for the key, from its token service (google-auth signs the JWT-bearer grant)."""
    try:
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=SCOPES, additional_claims={"aud": info["token_uri"]}
        )
    except (ValueError, google_exceptions.GoogleAuthError):
        raise unusable_key(account, "its private_key is not a valid PEM private key") from None
    request = TokenRequest()
    try:
        credentials.refresh(request)
    except google_exceptions.TransportError:
        failure = request.failure or GatewayError(502, errors.UPSTREAM, "upstream_unreachable",
                                                  f"Could not reach {TOKEN_SERVICE}.")
        logger.warning("Connection %s: no access token: %s", account.name, failure.code)
        raise failure from None
    except google_exceptions.GoogleAuthError as error:
        failure = token_refused(request.response, error, info)
        logger.warning("Connection %s: no access token: %s (HTTP %s)",
                       account.name, failure.code, failure.upstream_status)
        raise failure from None
    except (ValueError, TypeError, KeyError):  # an answer google-auth could not read (e.g. a bad expires_in)
        raise GatewayError(502, errors.UPSTREAM, "upstream_invalid_response",
                           f"{TOKEN_SERVICE} sent an answer that could not be read.") from None
    lifetime = DEFAULT_LIFETIME
    if credentials.expiry is not None:  # naive UTC, as google-auth keeps it
        lifetime = (credentials.expiry - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
    return credentials.token, lifetime


def token_refused(response: httpx.Response | None, error: Exception, info: dict) -> GatewayError:
    """The token call's failures as the gateway answers them: a refused key is a 401 upstream_credentials_rejected;
    429 and 5xx as for any provider answer."""
    secrets = [value for value in info.values() if isinstance(value, str)]
    message = errors.safe_message(str(error.args[0]) if error.args else "", secrets)
    if response is None or response.is_success:
        failure = GatewayError(502, errors.UPSTREAM, "upstream_invalid_response",
                               f"{TOKEN_SERVICE} answered without an access token.")
    elif response.status_code in (400, 401, 403):
        failure = errors.credentials_rejected(response.status_code, message, provider=TOKEN_SERVICE)
    else:
        failure = errors.map_status(response.status_code, response.headers, message, "", provider=TOKEN_SERVICE)
    failure.upstream_status = response.status_code if response is not None else None
    return failure


# --- The adapter --------------------------------------------------------------------------------------


class VertexAIAdapter(Adapter):
    """Gemini models on Vertex AI, called with an access token of the connection's service account."""

    def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        headers = self.auth_headers(account)
        model_url = f"{project_base(account)}/publishers/google/models/{quote(target.model, safe='')}"
        if target.task == "embeddings":
            return UpstreamCall("POST", f"{model_url}:predict", {**headers, "Accept": "application/json"},
                                predict_request(body))
        return gemini.translated_call(model_url, target, body, headers)

    def build_check_call(self, account: Account) -> UpstreamCall:
        headers = {**self.auth_headers(account), "Accept": "application/json"}
        return UpstreamCall("GET", f"{project_base(account)}/endpoints", headers, params={"pageSize": "1"})

    def auth_headers(self, account: Account) -> dict[str, str]:
        return {"Authorization": f"Bearer {access_token(account)}"}

    def send(self, account: Account, call: UpstreamCall, *, redact_also: tuple[str, ...] = ()) -> httpx.Response:
        bearer = call.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            return super().send(account, call, redact_also=(*redact_also, bearer))
        except GatewayError as error:
            if error.upstream_status == 401:
                forget_token(account)  # revoked early: the next call obtains a fresh token
            raise

    def parse_response(self, target: Target, document: object) -> dict:
        if target.task == "embeddings":
            return predict_response(target.model, document)
        return gemini.chat_response(target.model, document)

    def relay_stream(self, account: Account, target: Target, response: httpx.Response) -> EventStream:
        events = gemini.translate_stream(response, model="", provider=account.label, name=account.name)
        return EventStream(response, events)


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
