"""The OpenAI API family: OpenAI, Azure OpenAI (API key or Entra ID), and every provider that speaks OpenAI's API.

They all take OpenAI's request and answer shapes as they are; only the address and the credential header
differ. The request's `model` is always replaced by the endpoint's model (on Azure it is the deployment).
"""

from urllib.parse import quote

import httpx

from connections.models import Connection
from endpoints.models import Endpoint

from ..errors import GatewayError
from . import azure_ad
from .base import Adapter, UpstreamCall, accept_headers

TASK_PATHS = {"chat": "chat/completions", "embeddings": "embeddings"}
AZURE_METHODS = ("azure", "azure_ad")
LOCAL_PROVIDERS = ("ollama", "openai_compatible")


class OpenAIAdapter(Adapter):
    """OpenAI (`api_key`, `azure`, `azure_ad`) and the OpenAI-compatible providers (`api_key` or `none`)."""

    def allow_loopback(self, connection: Connection) -> bool:
        return connection.provider in LOCAL_PROVIDERS

    def build_call(
        self, connection: Connection, endpoint: Endpoint, body: dict, secrets: dict[str, str]
    ) -> UpstreamCall:
        stream = bool(body.get("stream"))
        payload = {**body, "model": endpoint.model}
        headers = self.auth_headers(connection, secrets)
        headers.update(accept_headers(stream))
        path = TASK_PATHS[endpoint.task]
        if connection.auth_method in AZURE_METHODS:
            deployment = quote(endpoint.model, safe="")
            url = f"{azure_base(connection)}/openai/deployments/{deployment}/{path}"
            return UpstreamCall("POST", url, headers, payload, azure_params(connection), stream)
        return UpstreamCall("POST", f"{api_base(connection)}/{path}", headers, payload, stream=stream)

    def build_check_call(self, connection: Connection, secrets: dict[str, str]) -> UpstreamCall:
        headers = {**self.auth_headers(connection, secrets, fresh=True), "Accept": "application/json"}
        if connection.auth_method in AZURE_METHODS:
            url = f"{azure_base(connection)}/openai/models"
            return UpstreamCall("GET", url, headers, params=azure_params(connection))
        return UpstreamCall("GET", f"{api_base(connection)}/models", headers)

    def send(self, connection: Connection, call: UpstreamCall, secrets: dict[str, str]) -> httpx.Response:
        """As for everyone, and a token Azure refused is not offered again."""
        try:
            return super().send(connection, call, secrets)
        except GatewayError as error:
            if connection.auth_method == "azure_ad" and error.upstream_status == 401:
                azure_ad.forget_token(connection)  # revoked or expired early: sign in again next time
            raise

    def auth_headers(self, connection: Connection, secrets: dict[str, str], *, fresh: bool = False) -> dict[str, str]:
        """The credential headers; `fresh` (the Test action) signs in again rather than use a cached token."""
        if connection.auth_method == "none":
            return {}
        if connection.auth_method == "azure":
            return {"api-key": secrets["api_key"]}
        if connection.auth_method == "azure_ad":
            return {"Authorization": f"Bearer {azure_ad.access_token(connection, secrets, fresh=fresh)}"}
        headers = {"Authorization": f"Bearer {secrets['api_key']}"}
        organization = connection.config_value("organization") if connection.provider == "openai" else ""
        if organization:
            headers["OpenAI-Organization"] = organization
        return headers


def api_base(connection: Connection) -> str:
    """Where the OpenAI-style API lives: the connection's base_url or the registry's default."""
    base = connection.config_value("base_url").rstrip("/")
    if connection.provider == "ollama" and not base.endswith("/v1"):
        base += "/v1"  # Ollama serves its OpenAI-compatible API under /v1
    return base


def azure_base(connection: Connection) -> str:
    return connection.config_value("endpoint_url").rstrip("/")


def azure_params(connection: Connection) -> dict[str, str]:
    return {"api-version": connection.config_value("api_version")}
