"""`GET /healthz`: whether this server can do its job, for load balancers and monitoring.

Each check in settings.HEALTH_CHECKS is a function answering `(name, "ok")` or `(name, what is wrong)`,
given the words of the checks before it (so one that needs the database can skip its query when the database
already failed, instead of waiting for it again); the apps provide the checks of what they own (the
connections app: that the configured keys read the stored secrets). The answer is 200 when every check says
"ok", else 503 with each check's word, never a DSN.

The server answers it in front of Django (config/asgi.py, `healthz_asgi`) on a database thread of its own,
so a probe never waits behind gateway traffic or a busy page; the Django view answers the same.
"""

from collections.abc import Callable
from functools import cache

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.utils.module_loading import import_string
from django.views.decorators.http import require_GET

from .asgi_http import Receive, Request, Scope, Send, json_answer, send_answer
from .db_threads import DatabaseThreads

Check = Callable[[dict[str, str]], tuple[str, str]]
HEALTH_THREAD = DatabaseThreads("health-db", 1)


def database_answers(earlier: dict[str, str]) -> tuple[str, str]:
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


def health() -> tuple[int, dict]:
    """Every check's word, and the status that sums them up."""
    checks: dict[str, str] = {}
    for check in configured_checks(tuple(settings.HEALTH_CHECKS)):
        name, word = check(checks)
        checks[name] = word
    healthy = all(value == "ok" for value in checks.values())
    return (200 if healthy else 503), {"status": "ok" if healthy else "unavailable", **checks}


@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    status, document = health()
    return JsonResponse(document, status=status)


async def healthz_asgi(scope: Scope, receive: Receive, send: Send) -> None:
    request = Request.of(scope, receive)
    if request.method not in ("GET", "HEAD"):
        await send_answer(send, request, json_answer(405, {"detail": "Use GET."}, {"Allow": "GET"}))
        return
    status, document = await HEALTH_THREAD.run(health)
    await send_answer(send, request, json_answer(status, document))
