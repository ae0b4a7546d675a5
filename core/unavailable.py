"""The database unreachable while serving: a clear 503 on every surface, never a traceback or a DSN.

Two hooks share one answer. The middleware catches the error raised by a view (most requests: the session,
the token and the rows are all read inside the view); `server_error` (settings' handler500) catches it
when it comes from a middleware or a template instead. Both answer in the shape of the surface asked:
the API's `{"detail": ...}`, the gateway's `{"error": {...}}`, `/healthz`'s status document,
and an HTML page in the site's layout, rendered without a request context so it needs no database.
"""

import logging
import sys
from collections.abc import Callable

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.template import loader
from django.views import defaults

logger = logging.getLogger(__name__)

# What "the database cannot be reached or used right now" raises (psycopg and sqlite3, wrapped by Django).
# Integrity and programming errors are answers about the data or the code, not an outage: they stay as they are.
DATABASE_DOWN = (OperationalError, InterfaceError)
MESSAGE = "The database is unavailable right now. Try again in a moment; if it persists, check the database server."
RETRY_AFTER_SECONDS = 5


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """A 503 in the shape of the surface the request was for."""
    path = request.path_info
    if path.startswith("/api/"):
        response = JsonResponse({"detail": MESSAGE}, status=503)
    elif path.startswith("/gateway/"):
        response = JsonResponse(
            {"error": {"message": MESSAGE, "type": "server_error", "code": "database_unavailable"}}, status=503
        )
    elif path.rstrip("/") == "/healthz":
        response = JsonResponse({"status": "unavailable", "database": "unavailable"}, status=503)
    else:
        response = HttpResponse(loader.render_to_string("503.html", {"message": MESSAGE}), status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    return response


def log_outage(request: HttpRequest, error: BaseException) -> None:
    """One line for the operator: the error's class and reason (psycopg and sqlite3 never put a password there)."""
    reason = " ".join(str(error).split())[:300]
    logger.warning("Database unavailable while serving %s %s: %s: %s",
                   request.method, request.path, type(error).__name__, reason)


class DatabaseUnavailableMiddleware:
    """Turns a database outage raised by a view into the surface's 503."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, DATABASE_DOWN):
            log_outage(request, exception)
            return database_unavailable_response(request)
        return None


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: an outage raised outside a view still gets the 503; anything else the usual 500 page."""
    error = sys.exc_info()[1]
    if isinstance(error, DATABASE_DOWN):
        return database_unavailable_response(request)
    if request.path_info.startswith(("/api/", "/gateway/")):
        return JsonResponse(
            {"detail": "Server error."} if request.path_info.startswith("/api/")
            else {"error": {"message": "Server error.", "type": "server_error", "code": "internal_error"}},
            status=500,
        )
    return defaults.server_error(request)
