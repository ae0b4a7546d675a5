"""A logging filter that strips credentials (auth headers, bearer tokens, our `llmc_` tokens) from log records.

It is attached to every handler in settings.LOGGING, so whatever a library or our code logs (a request's
headers, an upstream error, a traceback) leaves the process with `[redacted]` in place of the value. It works on
text only and never queries the database: redacting stored connection secrets by value is done elsewhere.
"""

import logging
import re

REDACTED = "[redacted]"

# Header (or field) names whose value is a credential; `api_key` too, as code and query strings spell it.
_NAMES = r"(?:proxy-)?authorization|x-goog-api-key|x-api-key|api[-_]key"

# `'Authorization': 'Bearer x'`, `"x-api-key": "sk-…"`, `(b'authorization', b'…')`, `api_key='…'`.
_QUOTED_VALUE = re.compile(
    rf"""(?P<head>\b(?:{_NAMES})\b["']?\s*[:=,]\s*b?(?P<quote>["']))(?P<value>.*?)(?P=quote)""",
    re.IGNORECASE,
)
# `Authorization: Bearer x`, `x-api-key: sk-…`, `?api-key=…` (up to a space, comma, `;`, `&` or a closing bracket).
_BARE_VALUE = re.compile(
    rf"""(?P<head>\b(?:{_NAMES})\b\s*[:=]\s*)(?!\[redacted\])(?!["'])"""
    r"""(?P<value>(?:(?:bearer|basic|token|digest)\s+)?[^\s,;&'"\])}]+)""",
    re.IGNORECASE,
)
# Gemini-style `?key=…` in a logged URL.
_KEY_QUERY_PARAMETER = re.compile(r"(?P<head>[?&]key=)(?!\[redacted\])(?P<value>[^&\s'\"]+)", re.IGNORECASE)
_BEARER_TOKEN = re.compile(r"(?P<head>\bbearer\s+)(?!\[redacted\])(?P<value>[A-Za-z0-9\-._~+/]+=*)", re.IGNORECASE)
_OUR_API_TOKEN = re.compile(r"\bllmc_[A-Za-z0-9_\-]+")


def redact(text: str) -> str:
    """`text` with every credential value it carries replaced by `[redacted]`."""
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
