"""Access tokens for Azure OpenAI from Microsoft Entra ID, with a service principal's client credentials.

A connection with the `azure_ad` method stores the app registration's client secret; its tenant and client
ids are config. The gateway exchanges them for a token (OAuth 2.0 client credentials grant) at
`{AZURE_AUTHORITY_HOST}/{tenant_id}/oauth2/v2.0/token` with the Cognitive Services scope, and sends it as
`Authorization: Bearer`. Tokens are cached per process (providers/oauth.py) until a minute before they
expire; rotating the client secret changes the cache key, so the next call signs in with the new one.
"""

import logging
from urllib.parse import quote, urlencode

from django.conf import settings

from .. import errors, upstream
from ..account import Account
from ..errors import GatewayError
from ..oauth import TOKENS
from ..upstream import TRANSPORT_ERRORS, UpstreamResponse

logger = logging.getLogger("gateway")

ENTRA = "Microsoft Entra ID"
SCOPE = "https://cognitiveservices.azure.com/.default"
REFUSED_STATUSES = (400, 401, 403)  # OAuth answers a bad client, secret, tenant or scope with these


def token_url(account: Account) -> str:
    tenant = quote(account.config_value("tenant_id"), safe="")
    return f"{settings.AZURE_AUTHORITY_HOST.rstrip('/')}/{tenant}/oauth2/v2.0/token"


def cache_key(account: Account) -> tuple:
    """Also keyed by who signs in where, so that editing the tenant or client id fetches a new token."""
    return account.cache_key(token_url(account), account.config_value("client_id"))


async def access_token(account: Account, *, fresh: bool = False) -> str:
    """A valid access token for the connection's service principal, cached until shortly before it expires.

    `fresh` signs in even when a token is cached (the Test action checks the stored secret, which a cached
    token would outlive).
    """
    if fresh:
        forget_token(account)
    return await TOKENS.get(cache_key(account), lambda: fetch_token(account))


def forget_token(account: Account) -> None:
    """Azure refused a cached token (revoked, or its role removed): the next call signs in again."""
    TOKENS.forget(cache_key(account))


async def fetch_token(account: Account) -> tuple[str, float]:
    """(access token, seconds it lives) from Entra ID; GatewayErrors that say why when there is none."""
    client_secret = account.secrets.get("client_secret", "")
    form = urlencode({
        "grant_type": "client_credentials",
        "client_id": account.config_value("client_id"),
        "client_secret": client_secret,
        "scope": SCOPE,
    }).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    try:
        response = await upstream.send("POST", token_url(account), headers=headers, content=form, counted=False)
    except TRANSPORT_ERRORS as error:
        failure = errors.from_transport_error(error, provider=ENTRA)
        logger.warning("Connection %s: no Entra ID token: %s (%s)", account.name, failure.code,
                       type(error).__name__)
        raise failure from None
    if not response.is_success:
        failure = token_refused(response, [client_secret])
        logger.warning("Connection %s: Entra ID answered %d to the token request: %s",
                       account.name, response.status_code, failure.message)
        raise failure
    return read_token(response)


def token_refused(response: UpstreamResponse, secrets: list[str]) -> GatewayError:
    """Entra ID's OAuth error (`error`, `error_description` with its AADSTS code) as the gateway's answer."""
    status = response.status_code
    try:
        document = response.json()
    except ValueError:
        document = None
    if isinstance(document, dict) and isinstance(document.get("error_description"), str):
        # The description ends with trace and correlation ids: support detail, not the reason.
        description = document["error_description"].split(" Trace ID:")[0]
        message = errors.safe_message(description, secrets)
    else:
        message, _ = errors.provider_error_parts(response.content)
        message = errors.safe_message(message, secrets)
    if status in REFUSED_STATUSES:
        return GatewayError(
            401,
            errors.AUTHENTICATION,
            "upstream_credentials_rejected",
            f"{ENTRA} refused the connection's client credentials (HTTP {status})"
            + (f": {message}" if message else "."),
            upstream_status=status,
        )
    if status == 429:
        failure = errors.map_status(status, response.headers, message, "", provider=ENTRA)
    else:  # the caller's request is not at fault: Entra ID failed, or AZURE_AUTHORITY_HOST is wrong
        failure = GatewayError(
            502, errors.UPSTREAM, "upstream_error",
            f"{ENTRA} answered HTTP {status} to the token request" + (f": {message}" if message else "."),
        )
    failure.upstream_status = status
    return failure


def read_token(response: UpstreamResponse) -> tuple[str, float]:
    try:
        document = response.json()
        token, expires_in = document["access_token"], float(document["expires_in"])
    except (ValueError, TypeError, KeyError):
        raise GatewayError(
            502, errors.UPSTREAM, "upstream_invalid_response", f"{ENTRA} answered without a usable access token."
        ) from None
    if not isinstance(token, str) or not token:
        raise GatewayError(
            502, errors.UPSTREAM, "upstream_invalid_response", f"{ENTRA} answered without a usable access token."
        )
    return token, expires_in
