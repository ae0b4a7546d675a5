"""Google Vertex AI with a service account key: an OAuth access token per key, Gemini's format for chat.

The key file's JSON is turned into an access token by google-auth (the JWT-bearer grant at the key's
`token_uri`); the token call goes through the gateway's own guarded transport, so it obeys the same
address rules as every provider call. Tokens are cached per process for each (connection, key version)
until shortly before they expire: N calls obtain one token, and a rotated key obtains a new one at once.
Chat uses the Gemini translation (gateway/adapters/gemini.py); embeddings use Vertex's `:predict`.
"""

import json
import logging
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import quote

import httpx
from google.auth import exceptions as google_exceptions
from google.auth import transport as google_transport
from google.oauth2 import service_account

from connections.models import Connection
from endpoints.models import Endpoint

from .. import errors, upstream
from ..errors import GatewayError
from . import gemini, translate
from .base import Adapter, EventStream, UpstreamCall

logger = logging.getLogger("gateway")

SCOPES = ["https://www.googleapis.com/auth/cloud-platform"]
DEFAULT_TOKEN_URI = "https://oauth2.googleapis.com/token"
TOKEN_SERVICE = "Google's OAuth token service"
EXPIRY_MARGIN = 60.0  # seconds before expiry when a cached token is no longer handed out
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


@dataclass
class CachedToken:
    value: str
    good_until: float  # time.monotonic()


class TokenCache:
    """Access tokens per (connection id, key version), shared by the process's threads; one refresh at a time per key."""

    def __init__(self):
        self._tokens: dict[tuple, CachedToken] = {}
        self._locks: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()

    def token(self, connection: Connection, key_info: dict) -> str:
        key = (connection.pk, connection.secrets_updated_at)
        cached = self._tokens.get(key)
        if cached and cached.good_until > time.monotonic():
            return cached.value
        with self._lock:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:  # callers arriving during a refresh wait for it instead of refreshing again
            cached = self._tokens.get(key)
            if cached and cached.good_until > time.monotonic():
                return cached.value
            fresh = obtain_token(connection, key_info)
            with self._lock:
                for stale in [k for k in self._tokens if k[0] == connection.pk and k != key]:
                    self._tokens.pop(stale, None)  # an older key version of this connection
                    self._locks.pop(stale, None)
                self._tokens[key] = fresh
            return fresh.value

    def forget(self, connection: Connection) -> None:
        """Drop the connection's tokens (the provider refused one before its time)."""
        with self._lock:
            for key in [k for k in self._tokens if k[0] == connection.pk]:
                self._tokens.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._tokens.clear()
            self._locks.clear()


tokens = TokenCache()


def key_info(connection: Connection, secrets: dict[str, str]) -> dict:
    """The stored key file as a dict, or a 503 saying that it cannot be used."""
    try:
        info = json.loads(secrets.get("service_account_json", ""))
    except ValueError:
        info = None
    if not isinstance(info, dict) or not info.get("client_email") or not info.get("private_key"):
        raise unusable_key(connection, "it is not a service account key file's JSON")
    return {**info, "token_uri": info.get("token_uri") or DEFAULT_TOKEN_URI}


def unusable_key(connection: Connection, why: str) -> GatewayError:
    return GatewayError(
        503,
        errors.UNAVAILABLE,
        "connection_credentials_invalid",
        f"The service account key of connection '{connection.name}' cannot be used: {why}. Paste the key file again.",
    )


def obtain_token(connection: Connection, info: dict) -> CachedToken:
    """An access token for the key, from its token service (google-auth signs the JWT-bearer grant)."""
    try:
        credentials = service_account.Credentials.from_service_account_info(
            info, scopes=SCOPES, additional_claims={"aud": info["token_uri"]}
        )
    except (ValueError, google_exceptions.GoogleAuthError):
        raise unusable_key(connection, "its private_key is not a valid PEM private key") from None
    request = TokenRequest()
    started = time.monotonic()
    try:
        credentials.refresh(request)
    except google_exceptions.TransportError:
        failure = request.failure or GatewayError(502, errors.UPSTREAM, "upstream_unreachable",
                                                  f"Could not reach {TOKEN_SERVICE}.")
        logger.warning("Connection %s: no access token: %s", connection.name, failure.code)
        raise failure from None
    except google_exceptions.GoogleAuthError as error:
        failure = token_refused(request.response, error, info)
        logger.warning("Connection %s: no access token: %s (HTTP %s)",
                       connection.name, failure.code, failure.upstream_status)
        raise failure from None
    except (ValueError, TypeError, KeyError):  # an answer google-auth could not read (e.g. a bad expires_in)
        raise GatewayError(502, errors.UPSTREAM, "upstream_invalid_response",
                           f"{TOKEN_SERVICE} sent an answer that could not be read.") from None
    lifetime = DEFAULT_LIFETIME
    if credentials.expiry is not None:  # naive UTC, as google-auth keeps it
        lifetime = (credentials.expiry - datetime.now(UTC).replace(tzinfo=None)).total_seconds()
    margin = min(EXPIRY_MARGIN, lifetime / 2)
    return CachedToken(credentials.token, started + lifetime - margin)


def token_refused(response: httpx.Response | None, error: Exception, info: dict) -> GatewayError:
    """SPEC §6 for the token call: a refused key is a 401 upstream_credentials_rejected; 429, 5xx as usual."""
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

    def build_call(
        self, connection: Connection, endpoint: Endpoint, body: dict, secrets: dict[str, str]
    ) -> UpstreamCall:
        headers = self.auth_headers(connection, secrets)
        model_url = f"{project_base(connection)}/publishers/google/models/{quote(endpoint.model, safe='')}"
        if endpoint.task == "embeddings":
            return UpstreamCall("POST", f"{model_url}:predict", {**headers, "Accept": "application/json"},
                                predict_request(body))
        return gemini.translated_call(model_url, endpoint, body, headers)

    def build_check_call(self, connection: Connection, secrets: dict[str, str]) -> UpstreamCall:
        headers = {**self.auth_headers(connection, secrets), "Accept": "application/json"}
        return UpstreamCall("GET", f"{project_base(connection)}/endpoints", headers, params={"pageSize": "1"})

    def auth_headers(self, connection: Connection, secrets: dict[str, str]) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens.token(connection, key_info(connection, secrets))}"}

    def send(self, connection: Connection, call: UpstreamCall, secrets: dict[str, str]) -> httpx.Response:
        access_token = call.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            return super().send(connection, call, {**secrets, "access_token": access_token})
        except GatewayError as error:
            if error.upstream_status == 401:
                tokens.forget(connection)  # revoked early: the next call obtains a fresh token
            raise

    def parse_response(self, endpoint: Endpoint, document: object) -> dict:
        if endpoint.task == "embeddings":
            return predict_response(endpoint.model, document)
        return gemini.chat_response(endpoint.model, document)

    def relay_stream(self, connection: Connection, response: httpx.Response) -> EventStream:
        events = gemini.translate_stream(response, model="", provider=self.label(connection), name=connection.name)
        return EventStream(response, events)


def location(connection: Connection) -> str:
    return connection.config_value("location") or "us-central1"


def api_base(connection: Connection) -> str:
    """The connection's base_url, else the regional endpoint (the global location has no region prefix)."""
    if connection.config.get("base_url"):
        return connection.config["base_url"].rstrip("/")
    if location(connection) == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location(connection)}-aiplatform.googleapis.com"


def project_base(connection: Connection) -> str:
    project = quote(connection.config_value("project_id"), safe="")
    return f"{api_base(connection)}/v1/projects/{project}/locations/{quote(location(connection), safe='')}"


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
