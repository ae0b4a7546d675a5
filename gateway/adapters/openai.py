"""The OpenAI API family: OpenAI, Azure OpenAI with an API key, and every provider that speaks OpenAI's API.

They all take OpenAI's request and answer shapes as they are; only the address and the credential header
differ. The request's `model` is always replaced by the endpoint's model (on Azure it is the deployment).
"""

from urllib.parse import quote

from connections.models import Connection
from endpoints.models import Endpoint

from .. import errors
from ..errors import GatewayError
from .base import Adapter, UpstreamCall

TASK_PATHS = {"chat": "chat/completions", "embeddings": "embeddings"}
LOCAL_PROVIDERS = ("ollama", "openai_compatible")


class OpenAIAdapter(Adapter):
    """OpenAI (`api_key`, `azure`) and the OpenAI-compatible providers (`api_key` or `none`)."""

    def supports(self, connection: Connection) -> None:
        if connection.auth_method == "azure_ad":
            raise GatewayError(
                501,
                errors.INVALID_REQUEST,
                "auth_method_not_supported",
                "The gateway cannot call Azure OpenAI with Entra ID credentials yet; use an API key connection.",
            )

    def allow_loopback(self, connection: Connection) -> bool:
        return connection.provider in LOCAL_PROVIDERS

    def build_call(
        self, connection: Connection, endpoint: Endpoint, body: dict, secrets: dict[str, str]
    ) -> UpstreamCall:
        stream = bool(body.get("stream"))
        payload = {**body, "model": endpoint.model}
        headers = self.auth_headers(connection, secrets)
        headers["Accept"] = "text/event-stream" if stream else "application/json"
        if stream:
            headers["Accept-Encoding"] = "identity"  # events pass through byte for byte, as they arrive
        path = TASK_PATHS[endpoint.task]
        if connection.auth_method == "azure":
            deployment = quote(endpoint.model, safe="")
            url = f"{azure_base(connection)}/openai/deployments/{deployment}/{path}"
            return UpstreamCall("POST", url, headers, payload, azure_params(connection), stream)
        return UpstreamCall("POST", f"{api_base(connection)}/{path}", headers, payload, stream=stream)

    def build_check_call(self, connection: Connection, secrets: dict[str, str]) -> UpstreamCall:
        headers = {**self.auth_headers(connection, secrets), "Accept": "application/json"}
        if connection.auth_method == "azure":
            url = f"{azure_base(connection)}/openai/models"
            return UpstreamCall("GET", url, headers, params=azure_params(connection))
        return UpstreamCall("GET", f"{api_base(connection)}/models", headers)

    def auth_headers(self, connection: Connection, secrets: dict[str, str]) -> dict[str, str]:
        if connection.auth_method == "none":
            return {}
        if connection.auth_method == "azure":
            return {"api-key": secrets["api_key"]}
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
