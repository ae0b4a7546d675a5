"""Redaction: the one place that turns credentials in text into `[redacted]`.

Two kinds of text carry them. Provider text (error messages, answers) may echo a connection's secret in
any encoding, or a key of someone else's: `redact(text, secrets)` replaces every form of the given values
and anything shaped like a key. Log records may carry auth headers, bearer tokens, our `llmc_` tokens and
the secrets the current call is using: `RedactSecrets`, the filter on every log handler, replaces those.

The secrets in use are known without a query per record: whoever decrypts or receives one (the connection
model) hands it to `remember_secrets()`, which keeps it in a context variable of the current thread (or
task). Each request starts with an empty set (`request_started`), so a value lives there only while the
call that used it runs, and at most MAX_REMEMBERED values are kept (long commands).

Works on text only and imports nothing of the apps: callers expand structured secrets (a key file's private
members) into the plain values to look for.
"""

import base64
import functools
import json
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar
from urllib.parse import quote, quote_plus

from django.core.signals import request_started

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words; real credentials are far longer
MAX_REMEMBERED = 64

# --- Every form of a known value ------------------------------------------------------------------------


def secret_forms(value: str) -> set[str]:
    """The ways a secret can show up in text: as is, URL-encoded, JSON-escaped and base64."""
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


def python_forms(value: str) -> set[str]:
    """How tracebacks and logged dicts show a value: its str and bytes reprs (quotes and backslashes escaped)."""
    return {repr(value)[1:-1], repr(value.encode())[2:-1]}


@functools.lru_cache(maxsize=64)
def values_pattern(values: tuple[str, ...], *, with_python_forms: bool = False) -> re.Pattern | None:
    """One regex for every form of the values, longest first (a secret goes whole before a shorter form inside it)."""
    forms = forms_of(values, with_python_forms=with_python_forms)
    if not forms:
        return None
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)), re.IGNORECASE)


def forms_of(values: tuple[str, ...], *, with_python_forms: bool = False) -> set[str]:
    forms: set[str] = set()
    for value in values:
        forms |= secret_forms(value)
        if with_python_forms and len(value) >= MIN_SECRET_LENGTH:
            forms |= python_forms(value)
    return forms


class WireSecrets:
    """Every form of some secrets, for bytes on the wire (an answer or a stream relayed without decoding it).

    Nearly every chunk holds none, so each form is first looked for as a plain substring of the lowered bytes
    (what the regex's IGNORECASE means for bytes: ASCII letters only), several times cheaper than the regex,
    which then replaces them in one pass.
    """

    __slots__ = ("forms", "pattern")

    def __init__(self, forms: tuple[bytes, ...], pattern: re.Pattern[bytes]):
        self.forms = forms
        self.pattern = pattern

    def found_in(self, data: bytes) -> bool:
        lowered = data.lower()
        return any(form in lowered for form in self.forms)

    def redact(self, data: bytes) -> bytes:
        return self.pattern.sub(REDACTED.encode(), data) if self.found_in(data) else data


@functools.lru_cache(maxsize=256)
def wire_secrets(values: tuple[str, ...]) -> WireSecrets | None:
    """`values_pattern` for bytes on the wire; None when there is nothing to look for."""
    pattern = values_pattern(values)
    if pattern is None:
        return None
    forms = forms_of(values)
    return WireSecrets(tuple(form.encode().lower() for form in forms), re.compile(pattern.pattern.encode(), re.IGNORECASE))


def plain_values(values: Iterable[object]) -> tuple[str, ...]:
    """The strings among `values` (a secret given as a JSON object counts as its JSON text)."""
    texts = (json.dumps(value) if isinstance(value, dict) else value for value in values)
    return tuple(dict.fromkeys(text for text in texts if isinstance(text, str) and text))


# --- Provider text --------------------------------------------------------------------------------------

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


def redact(text: str, secrets: Iterable[object] = ()) -> str:
    """Provider text with every form of every secret, and anything shaped like a key, replaced by [redacted]."""
    pattern = values_pattern(plain_values(secrets))
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    for shape, replacement in KEY_SHAPES:
        text = shape.sub(replacement, text)
    return text


# --- Log records ----------------------------------------------------------------------------------------

# Header (or field) names whose value is a credential; `api_key` too, as code and query strings spell it.
_NAMES = r"(?:proxy-)?authorization|x-goog-api-key|x-api-key|api[-_]key"

# `'Authorization': 'Bearer x'`, `"x-api-key": "sk-…"`, `(b'authorization', b'…')`, `api_key='…'`.
_QUOTED_VALUE = re.compile(
    rf"""(?P<head>(?<![\w-])(?:{_NAMES})\b["']?\s*[:=,]\s*b?(?P<quote>["']))(?P<value>.*?)(?P=quote)""",
    re.IGNORECASE,
)
# `Authorization: Bearer x`, `x-api-key: sk-…`, `?api-key=…` (up to a space, comma, `;`, `&` or a closing bracket).
_BARE_VALUE = re.compile(
    rf"""(?P<head>(?<![\w-])(?:{_NAMES})\b\s*[:=]\s*)(?!\[redacted\])(?!["'])"""
    r"""(?P<value>(?:(?:bearer|basic|token|digest)\s+)?[^\s,;&'"\])}]+)""",
    re.IGNORECASE,
)
# Gemini-style `?key=…` in a logged URL.
_KEY_QUERY_PARAMETER = re.compile(r"(?P<head>[?&]key=)(?!\[redacted\])(?P<value>[^&\s'\"]+)", re.IGNORECASE)
_BEARER_TOKEN = re.compile(r"(?P<head>\bbearer\s+)(?!\[redacted\])(?P<value>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_OUR_API_TOKEN = re.compile(r"\bllmc_[A-Za-z0-9_\-]+")

_SECRETS_IN_USE: ContextVar[tuple[str, ...]] = ContextVar("secrets_in_use", default=())


def remember_secrets(values: Iterable[object]) -> None:
    """Redact these secret values (and their encoded forms) from this thread's log records from now on."""
    current = _SECRETS_IN_USE.get()
    new = tuple(text for text in plain_values(values) if text not in current)
    if new:
        _SECRETS_IN_USE.set((current + new)[-MAX_REMEMBERED:])


def forget_secrets(**_: object) -> None:
    """A new request: the previous call's secrets are no longer this thread's to redact."""
    _SECRETS_IN_USE.set(())


request_started.connect(forget_secrets, dispatch_uid="core.redaction.forget_secrets")


def redact_log_text(text: str) -> str:
    """Log text with the secrets in use and every credential header, bearer or `llmc_` token replaced."""
    in_use = _SECRETS_IN_USE.get()
    pattern = values_pattern(in_use, with_python_forms=True) if in_use else None
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _QUOTED_VALUE.sub(lambda m: f"{m['head']}{REDACTED}{m['quote']}", text)
    for shape in (_BARE_VALUE, _KEY_QUERY_PARAMETER, _BEARER_TOKEN):
        text = shape.sub(lambda m: f"{m['head']}{REDACTED}", text)
    return _OUR_API_TOKEN.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message (formatted with its args), traceback and stack text; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = formatted_message(record)
        redacted = redact_log_text(message)
        if redacted != message:
            # Formatting here (once) is what lets a value passed in `args` next to its header name be found.
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse `exc_text` when set, so the traceback they print is this redacted one.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_log_text(record.exc_text)
        if record.stack_info:
            record.stack_info = redact_log_text(record.stack_info)
        return True


def formatted_message(record: logging.LogRecord) -> str:
    """The record's message with its args, as handlers would print it."""
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string: drop the args rather than have logging print them raw
        record.msg, record.args = str(record.msg), None
        return record.msg
