"""`GET /healthz`: whether this server can do its job, for load balancers and monitoring.

Each check in settings.HEALTH_CHECKS is a function answering `(name, "ok")` or `(name, what is wrong)`; the
apps provide the checks of what they own (the connections app: that the configured keys read the stored
secrets). The answer is 200 when every check says "ok", else 503 with each check's word, never a DSN.
"""

from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET

Check = Callable[[], tuple[str, str]]


def database_answers() -> tuple[str, str]:
    """The database takes a query."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any database failure means unhealthy; its text may carry a DSN
        return "database", "unavailable"
    return "database", "ok"


@cache
def configured_checks(paths: tuple[str, ...]) -> tuple[Check, ...]:
    return tuple(import_string(path) for path in paths)


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = dict(check() for check in configured_checks(tuple(settings.HEALTH_CHECKS)))
    healthy = all(value == "ok" for value in checks.values())
    return JsonResponse({"status": "ok" if healthy else "unavailable", **checks}, status=200 if healthy else 503)
