"""A logging filter that strips credentials (auth headers, bearer tokens, our `llmc_` tokens) from log records.

It is attached to every handler in settings.LOGGING, so whatever a library or our code logs (a request's
headers, an upstream error, a traceback) leaves the process with `[redacted]` in place of the value. It works on
text only and never queries the database.

Stored connection secrets are redacted by value too, without a query per record: whoever decrypts or receives
a secret (`Connection.get_secrets()` for the gateway, Test and rotation; `Connection.update_secrets()` for
forms, the API and commands) hands it to `remember_secrets()`, which keeps it in a context variable of the
current thread (or task). Each request starts with an empty set (`request_started`), so a value lives there
only while the call that used it runs, and at most `MAX_REMEMBERED` values are kept (long commands).
"""

import functools
import json
import logging
import re
from collections.abc import Iterable
from contextvars import ContextVar

from django.core.signals import request_started

REDACTED = "[redacted]"

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


MAX_REMEMBERED = 64
_SECRETS_IN_USE: ContextVar[tuple[str, ...]] = ContextVar("secrets_in_use", default=())


def remember_secrets(values: Iterable[object]) -> None:
    """Redact these secret values (and their encoded forms) from this thread's log records from now on."""
    current = _SECRETS_IN_USE.get()
    # A service account key may arrive as an object (the API accepts one); its private fields count.
    texts = (json.dumps(value) if isinstance(value, dict) else value for value in values)
    new = tuple(text for text in texts if isinstance(text, str) and text and text not in current)
    if new:
        _SECRETS_IN_USE.set((current + new)[-MAX_REMEMBERED:])


def forget_secrets(**_: object) -> None:
    """A new request: the previous call's secrets are no longer this thread's to redact."""
    _SECRETS_IN_USE.set(())


request_started.connect(forget_secrets, dispatch_uid="config.log_filters.forget_secrets")


@functools.lru_cache(maxsize=32)
def _secrets_pattern(values: tuple[str, ...]) -> re.Pattern | None:
    """One regex for every form of the values (built once per set of values, only when something is logged)."""
    # The gateway's list of forms (as is, URL-encoded, JSON-escaped, base64; a key file's private fields), so
    # logs and provider error messages are redacted alike. Imported here: settings load this module early.
    from gateway.errors import json_secret_values, secret_forms

    forms: set[str] = set()
    for value in values:
        forms |= secret_forms(value) | json_secret_values(value)
        # Tracebacks and logged dicts show values as Python reprs (quotes and backslashes escaped), str or bytes.
        forms |= {repr(value)[1:-1], repr(value.encode())[2:-1]}
    if not forms:
        return None
    return re.compile("|".join(re.escape(form) for form in sorted(forms, key=len, reverse=True)), re.IGNORECASE)


def redact(text: str) -> str:
    """`text` with every credential value it carries replaced by `[redacted]`."""
    pattern = _secrets_pattern(_SECRETS_IN_USE.get()) if _SECRETS_IN_USE.get() else None
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    text = _QUOTED_VALUE.sub(lambda m: f"{m['head']}{REDACTED}{m['quote']}", text)
    for pattern in (_BARE_VALUE, _KEY_QUERY_PARAMETER, _BEARER_TOKEN):
        text = pattern.sub(lambda m: f"{m['head']}{REDACTED}", text)
    return _OUR_API_TOKEN.sub(REDACTED, text)


class RedactSecrets(logging.Filter):
    """Rewrites a record's message (formatted with its args), traceback and stack text; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = formatted_message(record)
        redacted = redact(message)
        if redacted != message:
            # Formatting here (once) is what lets a value passed in `args` next to its header name be found.
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatters reuse `exc_text` when set, so the traceback they print is this redacted one.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


def formatted_message(record: logging.LogRecord) -> str:
    """The record's message with its args, as handlers would print it."""
    try:
        return record.getMessage()
    except Exception:  # noqa: BLE001 - a broken format string: drop the args rather than have logging print them raw
        record.msg, record.args = str(record.msg), None
        return record.msg
