"""Refused requests on one log line.

Django logs the exceptions it turns into client errors (PermissionDenied as 403 on `django.request`;
SuspiciousOperation such as a forged Host header or too many form fields as 400 on `django.security.<name>`;
BadRequest and unparsable multipart bodies as 400) with the exception's traceback. For an answer the client
caused, the traceback is only noise, and a flood of them hides what matters: this filter, on the log handler,
keeps the record's one-line message (which names the path, or what was wrong) and drops the traceback.
Answers of 500 and above keep theirs.
"""

import logging

DJANGO_REQUEST_LOGGERS = ("django.request", "django.security")


class RefusedRequestsOnOneLine(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and is_from(record.name, DJANGO_REQUEST_LOGGERS) and getattr(record, "status_code", 500) < 500:
            record.exc_info = None
            record.exc_text = None
        return True


def is_from(name: str, loggers: tuple[str, ...]) -> bool:
    return any(name == logger or name.startswith(f"{logger}.") for logger in loggers)
