"""The OpenAI API family: OpenAI, Azure OpenAI (API key or Entra ID), and every provider that speaks OpenAI's API.

They all take OpenAI's request and answer shapes as they are; only the address and the credential header
differ. The request's `model` is always replaced by the endpoint's model (on Azure it is the deployment).
"""

from urllib.parse import quote

from ..account import Account
from ..catalogue import TASKS
from ..errors import GatewayError
from . import azure_ad
from ..upstream import UpstreamResponse
from .base import Adapter, Target, UpstreamCall, accept_headers

AZURE_METHODS = ("azure", "azure_ad")


class OpenAIAdapter(Adapter):
    """OpenAI (`api_key`, `azure`, `azure_ad`) and the OpenAI-compatible providers (`api_key` or `none`)."""

    async def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        stream = bool(body.get("stream"))
        payload = {**body, "model": target.model}
        headers = await self.auth_headers(account)
        headers.update(accept_headers(stream))
        path = TASKS[target.task].openai_path
        if account.method.id in AZURE_METHODS:
            deployment = quote(target.model, safe="")
            url = f"{azure_base(account)}/openai/deployments/{deployment}/{path}"
            return UpstreamCall("POST", url, headers, payload, azure_params(account), stream)
        return UpstreamCall("POST", f"{api_base(account)}/{path}", headers, payload, stream=stream)

    async def build_check_call(self, account: Account) -> UpstreamCall:
        headers = {**await self.auth_headers(account, fresh=True), "Accept": "application/json"}
        if account.method.id in AZURE_METHODS:
            url = f"{azure_base(account)}/openai/models"
            return UpstreamCall("GET", url, headers, params=azure_params(account))
        return UpstreamCall("GET", f"{api_base(account)}/models", headers)

    native_apis = ("openai.responses",)

    async def build_forward_call(self, account: Account, target: Target, api: str, body: dict,
                                 headers: dict[str, str]) -> UpstreamCall:
        """The Responses API: `<base>/responses`; on Azure its v1 route, where the model is the deployment."""
        stream = body.get("stream") is True
        call_headers = {**await self.auth_headers(account), **accept_headers(stream)}
        if account.method.id in AZURE_METHODS:
            return UpstreamCall("POST", f"{azure_base(account)}/openai/v1/responses", call_headers, body, stream=stream)
        return UpstreamCall("POST", f"{api_base(account)}/responses", call_headers, body, stream=stream)

    async def send(
        self, account: Account, call: UpstreamCall, *, redact_also: tuple[str, ...] = ()
    ) -> UpstreamResponse:
        """As for everyone, and a token Azure refused is not offered again."""
        try:
            return await super().send(account, call, redact_also=redact_also)
        except GatewayError as error:
            if account.method.id == "azure_ad" and error.upstream_status == 401:
                azure_ad.forget_token(account)  # revoked or expired early: sign in again next time
            raise

    async def auth_headers(self, account: Account, *, fresh: bool = False) -> dict[str, str]:
        """The credential headers; `fresh` (the Test action) signs in again rather than use a cached token."""
        method = account.method.id
        if method == "none":
            return {}
        if method == "azure":
            return {"api-key": account.secrets["api_key"]}
        if method == "azure_ad":
            return {"Authorization": f"Bearer {await azure_ad.access_token(account, fresh=fresh)}"}
        headers = {"Authorization": f"Bearer {account.secrets['api_key']}"}
        organization = account.config_value("organization")
        if organization:
            headers["OpenAI-Organization"] = organization
        return headers


def api_base(account: Account) -> str:
    """Where the OpenAI-style API lives: the account's base_url or the catalogue's default (and its API path)."""
    base = account.base_url()
    path = account.provider.openai_path
    return base if not path or base.endswith(path) else base + path


def azure_base(account: Account) -> str:
    return account.config_value("endpoint_url").rstrip("/")


def azure_params(account: Account) -> dict[str, str]:
    return {"api-version": account.config_value("api_version")}
