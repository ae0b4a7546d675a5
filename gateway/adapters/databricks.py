"""Databricks Model Serving: foundation-model endpoints take and answer OpenAI's chat and embeddings formats.

Calls go to `{host}/serving-endpoints/{model}/invocations` with a Bearer token: the connection's personal
access token, or for a service principal (`oauth_m2m`) an access token from the workspace's OIDC token
endpoint (client credentials), cached per process until shortly before it expires. The cache is keyed by
the connection, its `secrets_updated_at` and its client ID and host, so a rotated secret gets a new token
on the next call, and concurrent calls wait for one token request instead of each making their own.
"""

import base64
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple
from urllib.parse import quote

import httpx

from connections.models import Connection
from endpoints.models import Endpoint

from .. import errors
from ..errors import GatewayError
from .base import Adapter, UpstreamCall, accept_headers

logger = logging.getLogger("gateway")

TOKEN_PATH = "/oidc/v1/token"
TOKEN_SCOPE = "all-apis"
EXPIRY_MARGIN = 60.0  # seconds before expiry a cached token is replaced
DEFAULT_EXPIRES_IN = 3600.0


class CachedToken(NamedTuple):
    value: str
    renew_at: float  # time.monotonic()


class TokenCache:
    """Access tokens per key, shared by every thread of the process; one fetch per key at a time."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tokens: dict[tuple, CachedToken] = {}
        self._fetching: dict[tuple, threading.Lock] = {}

    def get(self, key: tuple, fetch: Callable[[], tuple[str, float]]) -> str:
        """The cached token for `key`, or a new one from `fetch()` -> (token, expires_in seconds)."""
        token = self._fresh(key)
        if token is not None:
            return token
        with self._lock:
            key_lock = self._fetching.setdefault(key, threading.Lock())
        with key_lock:
            token = self._fresh(key)  # another thread may have fetched it while this one waited
            if token is not None:
                return token
            value, expires_in = fetch()
            renew_at = time.monotonic() + expires_in - min(EXPIRY_MARGIN, expires_in / 2)
            with self._lock:
                for stale in [other for other in self._tokens if other[0] == key[0] and other != key]:
                    del self._tokens[stale]  # the connection's old secret or settings: never used again
                    self._fetching.pop(stale, None)
                self._tokens[key] = CachedToken(value, renew_at)
            return value

    def forget(self, key: tuple) -> None:
        with self._lock:
            self._tokens.pop(key, None)

    def clear(self) -> None:
        """After fork, and in tests: start without tokens or locks held by another process's threads."""
        self._lock = threading.Lock()
        self._tokens = {}
        self._fetching = {}

    def _fresh(self, key: tuple) -> str | None:
        cached = self._tokens.get(key)
        if cached is not None and time.monotonic() < cached.renew_at:
            return cached.value
        return None


TOKENS = TokenCache()
os.register_at_fork(after_in_child=TOKENS.clear)


class DatabricksAdapter(Adapter):
    """Databricks with a personal access token (`token`) or a service principal's OAuth secret (`oauth_m2m`)."""

    def build_call(
        self, connection: Connection, endpoint: Endpoint, body: dict, secrets: dict[str, str]
    ) -> UpstreamCall:
        stream = bool(body.get("stream"))
        headers = {"Authorization": f"Bearer {self.access_token(connection, secrets)}"}
        headers.update(accept_headers(stream))
        payload = {name: value for name, value in body.items() if name != "model"}  # the URL names the endpoint
        url = f"{workspace(connection)}/serving-endpoints/{quote(endpoint.model, safe='')}/invocations"
        return UpstreamCall("POST", url, headers, payload, stream=stream)

    def build_check_call(self, connection: Connection, secrets: dict[str, str]) -> UpstreamCall:
        headers = {"Authorization": f"Bearer {self.access_token(connection, secrets)}", "Accept": "application/json"}
        return UpstreamCall("GET", f"{workspace(connection)}/api/2.0/serving-endpoints", headers)

    def send(self, connection: Connection, call: UpstreamCall, secrets: dict[str, str]) -> httpx.Response:
        """As for every provider; the access token is redacted too, and a refused OAuth token is dropped."""
        bearer = call.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            return super().send(connection, call, {**secrets, "access_token": bearer} if bearer else secrets)
        except GatewayError as error:
            if connection.auth_method == "oauth_m2m" and bearer and error.upstream_status in (401, 403):
                TOKENS.forget(token_key(connection))  # revoked or from a deleted principal: fetch anew next time
            raise

    # --- Credentials ----------------------------------------------------------------------------------

    def access_token(self, connection: Connection, secrets: dict[str, str]) -> str:
        if connection.auth_method == "oauth_m2m":
            return TOKENS.get(token_key(connection), lambda: self.fetch_token(connection, secrets))
        return secrets["token"]

    def fetch_token(self, connection: Connection, secrets: dict[str, str]) -> tuple[str, float]:
        """A service principal's access token from the workspace's OIDC endpoint (client credentials grant)."""
        client = f"{connection.config_value('client_id')}:{secrets['client_secret']}"
        call = UpstreamCall(
            "POST",
            f"{workspace(connection)}{TOKEN_PATH}",
            {"Authorization": "Basic " + base64.b64encode(client.encode()).decode(), "Accept": "application/json"},
            data={"grant_type": "client_credentials", "scope": TOKEN_SCOPE},
        )
        try:
            response = super().send(connection, call, secrets)
        except GatewayError as error:
            error.message = f"OAuth token request: {error.message}"
            raise
        try:
            document = response.json()
            token = document["access_token"]
            expires_in = float(document.get("expires_in") or DEFAULT_EXPIRES_IN)
        except (ValueError, KeyError, TypeError, AttributeError):
            raise GatewayError(502, errors.UPSTREAM, "upstream_invalid_response",
                               "Databricks' OAuth token endpoint answered without an access token.") from None
        if not isinstance(token, str) or not token:
            raise GatewayError(502, errors.UPSTREAM, "upstream_invalid_response",
                               "Databricks' OAuth token endpoint answered without an access token.")
        logger.info("Connection %s: obtained a Databricks OAuth token valid for %ds.", connection.name, expires_in)
        return token, expires_in


def workspace(connection: Connection) -> str:
    return connection.config_value("host").rstrip("/")


def token_key(connection: Connection) -> tuple:
    """What a cached token belongs to: this connection with its current secret, client ID and workspace."""
    return (connection.pk, connection.secrets_updated_at, connection.config_value("client_id"), workspace(connection))
