"""Gateway errors in OpenAI's shape, and SPEC §6's mapping of provider answers and failures onto them.

Every message that may carry provider text is redacted: each value of the connection's secrets (also
URL-encoded, base64 and JSON-escaped) and anything shaped like a bearer token or API key becomes
`[redacted]`, before the message is trimmed (trimming first could cut a key in two and leave half).
"""

import base64
import json
import math
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

import httpx

from connections.secrets import SecretsUnavailable

from .upstream import AddressRefused, retry_after_seconds

REDACTED = "[redacted]"
MAX_MESSAGE_LENGTH = 1000
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words; real credentials are far longer

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
    """An error the gateway answers with: HTTP status plus OpenAI's `{"error": {message, type, code}}`."""

    def __init__(
        self,
        status: int,
        type: str,
        code: str,
        message: str,
        *,
        retry_after: str | None = None,
        upstream_status: int | None = None,
    ):
        self.status = status
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
        return {"Retry-After": self.retry_after} if self.retry_after is not None else {}


# --- Redaction ----------------------------------------------------------------------------------------

KEY_SHAPES = (
    # Echoed credentials headers: "Bearer <token>", "Basic <base64>".
    (re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=\-*]{8,}"), r"\1 " + REDACTED),
    (re.compile(r"\b(Basic)\s+[A-Za-z0-9+/=]{8,}"), r"\1 " + REDACTED),
    # "api_key=…", "token: …", "x-api-key: …", "Authorization: …", also in JSON ("api_key": "…").
    (
        re.compile(
            r"(?i)\b((?:x-)?api[-_ ]?key|access[-_]?token|token|secret|password|authorization|signature)"
            r"([\"']?\s*[:=]\s*[\"']?)(?!\[redacted\])[^\s\"',;&]+"
        ),
        r"\1\2" + REDACTED,
    ),
    # Well-known key formats, including partly masked echoes such as "sk-abc*****wxyz".
    (re.compile(r"\b(?:sk|pk|rk)-[A-Za-z0-9_\-*.]{6,}"), REDACTED),
    (re.compile(r"\b(?:xai-|gsk_|AIza|dapi|hf_|r8_)[A-Za-z0-9_\-*]{10,}"), REDACTED),
    (re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"), REDACTED),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*"), REDACTED),  # JWTs
    # Long runs mixing letters and digits look like keys or signatures.
    (re.compile(r"\b(?=[A-Za-z0-9_\-]*\d)(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{32,}"), REDACTED),
)


def secret_forms(value: str) -> set[str]:
    """The ways a secret can show up in provider text: as is, URL-encoded, JSON-escaped and base64."""
    if len(value) < MIN_SECRET_LENGTH:
        return set()
    escaped = json.dumps(value)[1:-1]
    go_escaped = escaped.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
    forms = {value, quote(value, safe=""), quote_plus(value), escaped, escaped.replace("/", "\\/"), go_escaped}
    raw = value.encode()
    # base64 of text that merely contains the secret (e.g. "user:key") lines up at one of three offsets;
    # the characters that depend only on the secret's bytes are the middle of each encoding.
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + raw).decode().rstrip("=")
            start = 4 if offset else 0
            end = len(encoded) - (0 if (offset + len(raw)) % 3 == 0 else 4)
            middle = encoded[start:end]
            if len(middle) >= 8:
                forms.add(middle)
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with every form of every secret, and anything shaped like a key, replaced by [redacted]."""
    forms = set()
    for value in secrets:
        if isinstance(value, str):
            forms |= secret_forms(value)
            forms |= json_secret_values(value)
    if forms:
        # Longest first, so a secret is replaced whole before any shorter form inside it.
        alternatives = "|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True))
        text = re.sub(alternatives, REDACTED, text, flags=re.IGNORECASE)
    for pattern, replacement in KEY_SHAPES:
        text = pattern.sub(replacement, text)
    return text


def json_secret_values(value: str) -> set[str]:
    """A secret that is a JSON document (a service account key) is also redacted field by field."""
    if not value.startswith("{"):
        return set()
    try:
        document = json.loads(value)
    except ValueError:
        return set()
    if not isinstance(document, dict):
        return set()
    return {
        form
        for key, item in document.items()
        if key in ("private_key", "private_key_id", "client_secret") and isinstance(item, str)
        for form in secret_forms(item)
    }


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
    status: int, headers: httpx.Headers, body: bytes, *, secrets: Iterable[str], provider: str
) -> GatewayError:
    """The gateway's answer to a provider's error status, as SPEC §6's table says."""
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
    """SPEC §6: whatever status the provider refused the credentials with, the caller gets a 401."""
    return GatewayError(
        401,
        AUTHENTICATION,
        "upstream_credentials_rejected",
        f"{provider} rejected the connection's credentials (HTTP {status})" + (f": {message}" if message else "."),
    )


def map_status(status: int, headers: httpx.Headers, message: str, code: str, *, provider: str) -> GatewayError:
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


def from_transport_error(error: Exception, *, provider: str) -> GatewayError:
    """The gateway's answer when no usable HTTP answer came: 504 on timeouts, 502 when unreachable."""
    if isinstance(error, httpx.PoolTimeout):
        return GatewayError(
            503, UNAVAILABLE, "gateway_busy", "Too many calls to this provider are in progress; try again shortly."
        )
    if isinstance(error, httpx.ConnectTimeout):
        return GatewayError(504, TIMEOUT, "upstream_timeout", f"Timed out connecting to {provider}.")
    if isinstance(error, httpx.TimeoutException):
        return GatewayError(504, TIMEOUT, "upstream_timeout", f"{provider} did not answer in time.")
    if isinstance(error, AddressRefused):
        return GatewayError(502, UPSTREAM, "upstream_address_refused", str(error))
    if isinstance(error, httpx.ConnectError):
        return GatewayError(502, UPSTREAM, "upstream_unreachable", f"Could not connect to {provider}.")
    return GatewayError(
        502, UPSTREAM, "upstream_error", f"The connection to {provider} failed ({type(error).__name__})."
    )


def from_secrets_unavailable(error: SecretsUnavailable) -> GatewayError:
    """503, not 500: the stored secrets need an operator (a re-entered key or the missing encryption key)."""
    return GatewayError(503, UNAVAILABLE, "connection_secrets_unavailable", str(error))


def invalid_response(provider: str) -> GatewayError:
    return GatewayError(502, UPSTREAM, "upstream_invalid_response", f"{provider} sent an answer that is not JSON.")
