"""Errors of provider calls in OpenAI's shape, and how provider answers and failures map onto them.

The gateway answers callers with these as they are; the table of which provider answer becomes which
status is in README.md (Gateway). Every message that may carry provider text is redacted (core.redaction)
before it is trimmed: trimming first could cut a key in two and leave half.
"""

import json
import math
import re
from collections.abc import Iterable

import asyncio
from collections.abc import Mapping

import aiohttp

from core.redaction import REDACTED, redact

from .upstream import AddressRefused, AnswerTooLarge, retry_after_seconds

MAX_MESSAGE_LENGTH = 1000

INVALID_REQUEST = "invalid_request_error"
AUTHENTICATION = "authentication_error"
RATE_LIMIT = "rate_limit_error"
UPSTREAM = "upstream_error"
TIMEOUT = "timeout_error"
UNAVAILABLE = "service_unavailable_error"

SAME_STATUS = {400: "upstream_bad_request", 404: "upstream_not_found", 422: "upstream_unprocessable"}
REJECTED_KEY_CODES = {"API_KEY_INVALID", "API_KEY_EXPIRED"}
CODE_SHAPE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,63}")


class GatewayError(Exception):
    """An error the gateway answers with: HTTP status plus OpenAI's `{"error": {message, type, code}}`.

    Raised by the provider client for everything a call can end in besides an answer, and by the gateway's
    own checks (token, endpoint, body); the Test action reports its message.
    """

    def __init__(
        self,
        status: int,
        type: str,
        code: str,
        message: str,
        *,
        retry_after: str | None = None,
        upstream_status: int | None = None,
        headers: dict[str, str] | None = None,
    ):
        self.status = status
        self.extra_headers = headers or {}
        self.upstream_status = upstream_status
        self.type = type
        self.code = code
        self.message = message
        self.retry_after = retry_after
        super().__init__(message)

    def __repr__(self) -> str:
        return f"<GatewayError {self.status} {self.code}>"

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "code": self.code}}

    def headers(self) -> dict[str, str]:
        headers = dict(self.extra_headers)
        if self.retry_after is not None:
            headers["Retry-After"] = self.retry_after
        return headers


def safe_message(text: str, secrets: Iterable[str]) -> str:
    """Provider text fit to show: redacted first, then trimmed."""
    text = redact(" ".join(text.split()), secrets)
    if len(text) > MAX_MESSAGE_LENGTH:
        text = text[:MAX_MESSAGE_LENGTH].rstrip() + "…"
    return text


# --- Mapping ------------------------------------------------------------------------------------------


def provider_error_parts(body: bytes) -> tuple[str, str]:
    """(message, code) from an error body in OpenAI's shape or the common variants, else its text."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        document = json.loads(text)
    except ValueError:
        return text[: MAX_MESSAGE_LENGTH * 4], ""
    error = document.get("error", document) if isinstance(document, dict) else document
    if isinstance(error, list) and error and isinstance(error[0], dict):
        error = error[0]  # Gemini-style lists, some proxies
        if isinstance(error.get("error"), dict):
            error = error["error"]  # [{"error": {...}}], as Gemini streams answer
    if isinstance(error, str):
        # OAuth token endpoints answer {"error": "invalid_client", "error_description": "..."}.
        description = document.get("error_description") if isinstance(document, dict) else None
        return (f"{error}: {description}" if isinstance(description, str) else error), ""
    if not isinstance(error, dict):
        return text[: MAX_MESSAGE_LENGTH * 4], ""
    message = next(
        (error[key] for key in ("message", "Message", "detail", "error", "msg") if isinstance(error.get(key), str)),
        text,
    )
    code = error.get("code") or error.get("type") or ""
    if not isinstance(code, str):
        # Google APIs: a numeric "code", the canonical "status" and an ErrorInfo "reason" (API_KEY_INVALID).
        code = google_reason(error.get("details")) or error.get("status") or code
    return message, str(code) if isinstance(code, (str, int)) else ""


def google_reason(details: object) -> str:
    """The `reason` of a Google error's ErrorInfo detail, if any."""
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, dict) and isinstance(detail.get("reason"), str):
            return detail["reason"]
    return ""


def from_upstream_response(
    status: int, headers: Mapping[str, str], body: bytes, *, secrets: Iterable[str], provider: str
) -> GatewayError:
    """The gateway's answer to a provider's error status (README.md, Gateway, lists the mapping)."""
    secrets = list(secrets)
    message, provider_code = provider_error_parts(body)
    # AWS names the error in a header ("ValidationException:http://internal.amazon.com/coral/...").
    provider_code = provider_code or headers.get("x-amzn-errortype", "").split(":")[0]
    message = safe_message(message, secrets)
    if status == 400 and provider_code in REJECTED_KEY_CODES:
        # Google answers a bad or expired API key with 400, not 401: it is still a rejected credential.
        error = credentials_rejected(status, message, provider=provider)
    else:
        error = map_status(status, headers, message, redact(provider_code, secrets), provider=provider)
    error.upstream_status = status
    return error


def credentials_rejected(status: int, message: str, *, provider: str) -> GatewayError:
    """Whatever status the provider refused the credentials with, the caller gets a 401."""
    return GatewayError(
        401,
        AUTHENTICATION,
        "upstream_credentials_rejected",
        f"{provider} rejected the connection's credentials (HTTP {status})" + (f": {message}" if message else "."),
    )


def map_status(status: int, headers: Mapping[str, str], message: str, code: str, *, provider: str) -> GatewayError:
    if status in SAME_STATUS:
        code = code if CODE_SHAPE.fullmatch(code) and REDACTED not in code else SAME_STATUS[status]
        return GatewayError(status, INVALID_REQUEST, code, message or f"{provider} answered HTTP {status}.")
    if status in (401, 403):
        return credentials_rejected(status, message, provider=provider)
    if status == 429:
        wait = retry_after_seconds(headers.get("retry-after"))
        return GatewayError(
            429,
            RATE_LIMIT,
            "upstream_rate_limited",
            f"{provider} is rate limiting this connection" + (f": {message}" if message else "."),
            retry_after=str(math.ceil(wait)) if wait is not None else "1",
        )
    if 300 <= status < 400:
        # Redirects are never followed: they would carry the key headers wherever the provider points.
        return GatewayError(
            502,
            UPSTREAM,
            "upstream_redirect",
            f"{provider} answered with a redirect (HTTP {status}); check the connection's base URL.",
        )
    if status == 408:
        return GatewayError(504, TIMEOUT, "upstream_timeout", f"{provider} timed out (HTTP 408).")
    if status >= 500:
        return GatewayError(
            502, UPSTREAM, "upstream_error", f"{provider} answered HTTP {status}" + (f": {message}" if message else ".")
        )
    # Other 4xx (413 too large, 409, 415…): the provider refused this request; the caller can change it.
    return GatewayError(
        400,
        INVALID_REQUEST,
        f"upstream_{status}",
        f"{provider} answered HTTP {status}" + (f": {message}" if message else "."),
    )


def from_transport_error(error: BaseException, *, provider: str) -> GatewayError:
    """The gateway's answer when no usable HTTP answer came: 504 on timeouts, 502 when unreachable."""
    if isinstance(error, (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError)) and (
        isinstance(getattr(error, "os_error", None), TimeoutError) or isinstance(error, aiohttp.ConnectionTimeoutError)
    ):
        return GatewayError(504, TIMEOUT, "upstream_timeout", f"Timed out connecting to {provider}.")
    if isinstance(error, asyncio.TimeoutError):
        return GatewayError(504, TIMEOUT, "upstream_timeout", f"{provider} did not answer in time.")
    if isinstance(error, AddressRefused):
        return GatewayError(502, UPSTREAM, "upstream_address_refused", str(error))
    if isinstance(error, AnswerTooLarge):
        return GatewayError(
            502, UPSTREAM, "upstream_response_too_large",
            f"{provider}'s answer is larger than {error.limit} bytes (GATEWAY_MAX_RESPONSE_BYTES); it was not read.",
        )
    if isinstance(error, aiohttp.InvalidURL):
        return GatewayError(
            502, UPSTREAM, "upstream_invalid_url",
            f"The address of {provider} cannot be called; check the connection's URL.",
        )
    if isinstance(error, aiohttp.ClientConnectorError):
        return GatewayError(502, UPSTREAM, "upstream_unreachable", f"Could not connect to {provider}.")
    return GatewayError(
        502, UPSTREAM, "upstream_error", f"The connection to {provider} failed ({type(error).__name__})."
    )


def not_a_stream(provider: str, media_type: str) -> GatewayError:
    """A stream was asked for and the provider answered something else (HTML, JSON, garbage)."""
    kind = f"'{media_type}'" if media_type else "no content type"
    return GatewayError(
        502, UPSTREAM, "upstream_invalid_response", f"{provider} answered a stream request with {kind}, not an event stream."
    )


def invalid_stream(provider: str) -> GatewayError:
    """An event stream that stopped being one part way."""
    return GatewayError(502, UPSTREAM, "upstream_invalid_response", f"{provider} sent something that is not an event stream.")


def invalid_response(provider: str) -> GatewayError:
    return GatewayError(502, UPSTREAM, "upstream_invalid_response", f"{provider} sent an answer that is not JSON.")
