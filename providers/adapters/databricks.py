"""Databricks Model Serving: foundation-model endpoints take and answer OpenAI's chat and embeddings formats.

Calls go to `{host}/serving-endpoints/{model}/invocations` with a Bearer token: the connection's personal
access token, or for a service principal (`oauth_m2m`) an access token from the workspace's OIDC token
endpoint (client credentials), cached per process until shortly before it expires (providers/oauth.py). The
cache is keyed by the account, its secrets version and its client ID and host, so a rotated secret gets a
new token on the next call, and concurrent calls wait for one token request instead of each making their own.
"""

import base64
import logging
from urllib.parse import quote

from .. import errors
from ..account import Account
from ..errors import GatewayError
from ..oauth import TOKENS
from ..upstream import UpstreamResponse
from .base import Adapter, Target, UpstreamCall, accept_headers

logger = logging.getLogger("gateway")

TOKEN_PATH = "/oidc/v1/token"
TOKEN_SCOPE = "all-apis"
DEFAULT_EXPIRES_IN = 3600.0


class DatabricksAdapter(Adapter):
    """Databricks with a personal access token (`token`) or a service principal's OAuth secret (`oauth_m2m`)."""

    async def build_call(self, account: Account, target: Target, body: dict) -> UpstreamCall:
        stream = bool(body.get("stream"))
        headers = {"Authorization": f"Bearer {await self.access_token(account)}"}
        headers.update(accept_headers(stream))
        payload = {name: value for name, value in body.items() if name != "model"}  # the URL names the endpoint
        url = f"{workspace(account)}/serving-endpoints/{quote(target.model, safe='')}/invocations"
        return UpstreamCall("POST", url, headers, payload, stream=stream)

    async def build_check_call(self, account: Account) -> UpstreamCall:
        headers = {"Authorization": f"Bearer {await self.access_token(account)}", "Accept": "application/json"}
        return UpstreamCall("GET", f"{workspace(account)}/api/2.0/serving-endpoints", headers)

    async def send(
        self, account: Account, call: UpstreamCall, *, redact_also: tuple[str, ...] = ()
    ) -> UpstreamResponse:
        """As for every provider; the access token is redacted too, and a refused OAuth token is dropped."""
        bearer = call.headers.get("Authorization", "").removeprefix("Bearer ")
        try:
            return await super().send(account, call, redact_also=(*redact_also, bearer) if bearer else redact_also)
        except GatewayError as error:
            if account.method.id == "oauth_m2m" and bearer and error.upstream_status in (401, 403):
                TOKENS.forget(token_key(account))  # revoked or from a deleted principal: fetch anew next time
            raise

    # --- Credentials ----------------------------------------------------------------------------------

    async def access_token(self, account: Account) -> str:
        if account.method.id == "oauth_m2m":
            return await TOKENS.get(token_key(account), lambda: self.fetch_token(account))
        return account.secrets["token"]

    async def fetch_token(self, account: Account) -> tuple[str, float]:
        """A service principal's access token from the workspace's OIDC endpoint (client credentials grant)."""
        client = f"{account.config_value('client_id')}:{account.secrets['client_secret']}"
        call = UpstreamCall(
            "POST",
            f"{workspace(account)}{TOKEN_PATH}",
            {"Authorization": "Basic " + base64.b64encode(client.encode()).decode(), "Accept": "application/json"},
            data={"grant_type": "client_credentials", "scope": TOKEN_SCOPE},
        )
        try:
            response = await super().send(account, call)
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
        logger.info("Connection %s: obtained a Databricks OAuth token valid for %ds.", account.name, expires_in)
        return token, expires_in


def workspace(account: Account) -> str:
    return account.config_value("host").rstrip("/")


def token_key(account: Account) -> tuple:
    """What a cached token belongs to: this account with its current secret, client ID and workspace."""
    return account.cache_key(account.config_value("client_id"), workspace(account))
