"""The gateway's ASGI application: routes `/gateway/...` without Django's request cycle.

Django's ASGI handler gives every request a thread of its own for its synchronous parts, held for as long as
the answer lasts: a thread per stream. Served here instead, a call is a task on the event loop; its two
database reads borrow a thread for a moment (core/db_threads.py) and give it back before the first byte.

Past GATEWAY_MAX_IN_FLIGHT calls in this process, a call is answered at once with 503 and Retry-After
rather than queued: a load balancer or a client can go elsewhere or come back.
"""

import logging
import re
from collections.abc import Awaitable, Callable

from django.conf import settings

from core.asgi_http import (
    Answer, ClientGone, Receive, Request, Scope, Send, host_allowed, json_answer, redirect_to_https, send_answer,
)
from core.unavailable import DATABASE_DOWN, MESSAGE, RETRY_AFTER_SECONDS
from providers import errors
from providers.errors import GatewayError
from usage import recorder as usage

from . import passthrough, views

logger = logging.getLogger("gateway")

PREFIX = "/gateway/"
View = Callable[..., Awaitable[Answer | None]]
# (method, path pattern, view): the path's named groups are the view's keyword arguments.
ROUTES: tuple[tuple[str, re.Pattern, View], ...] = (
    ("POST", re.compile(r"v1/chat/completions"), views.chat_completions),
    ("POST", re.compile(r"v1/embeddings"), views.embeddings),
    ("GET", re.compile(r"v1/models"), views.models),
    ("POST", re.compile(r"v1/responses"), passthrough.responses),
    ("POST", re.compile(r"anthropic/v1/messages"), passthrough.anthropic_messages),
    ("POST", re.compile(r"anthropic/v1/messages/count_tokens"), passthrough.anthropic_count_tokens),
    ("POST", re.compile(r"(?P<endpoint_name>[^/\x00]+)/invocations"), views.invocations),
)


class GatewayApp:
    """Serves the gateway's routes (`handles()` says which requests); the site serves the rest."""

    def __init__(self, routes: tuple[tuple[str, re.Pattern, View], ...] = ROUTES):
        self.routes = routes

    def route(self, path: str) -> tuple[str, View, dict] | None:
        """The route for a path under the prefix: (its method, view, arguments), or None."""
        rest = path[len(PREFIX):]
        for method, pattern, view in self.routes:
            match = pattern.fullmatch(rest)
            if match:
                return method, view, match.groupdict()
        return None

    def handles(self, scope: Scope) -> bool:
        return scope["type"] == "http" and scope["path"].startswith(PREFIX) and self.route(scope["path"]) is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        method, view, arguments = self.route(scope["path"])
        request = Request.of(scope, receive)
        if not host_allowed(request.host):
            logger.warning("Invalid HTTP_HOST header for a gateway call.")
            await send_answer(send, None, json_answer(400, error_body("bad_request", "Bad request: invalid Host header.")))
            return
        if settings.SECURE_SSL_REDIRECT and not request.is_secure:
            await send_answer(send, request, redirect_to_https(request))
            return
        if views.InFlight.calls >= settings.GATEWAY_MAX_IN_FLIGHT:
            await self.refuse(request, send, GatewayError(
                503, errors.UNAVAILABLE, "gateway_busy",
                "This gateway instance has as many calls in flight as it takes; retry in a moment.",
                retry_after=str(RETRY_AFTER_SECONDS)))
            return
        views.InFlight.calls += 1
        call = usage.begin(recorded=method == "POST")  # calls of a model, not the list of models
        try:
            answer = await self.answer(request, send, method, view, arguments)
            if answer is not None:
                if call is not None:
                    call.status = answer.status
                await self.respond(request, send, answer)
        except ClientGone:
            if call is not None:
                call.error = usage.CLIENT_GONE
        finally:
            views.InFlight.calls -= 1
            if call is not None:
                usage.finish(call)

    async def answer(self, request: Request, send: Send, method: str, view: View, arguments: dict) -> Answer | None:
        try:
            if request.method != method:
                raise GatewayError(405, errors.INVALID_REQUEST, "method_not_allowed", f"Use {method}.",
                                   headers={"Allow": method})
            if getattr(view, "authenticates", False):  # the route looks the token up with what it reads
                return await view(request, send, **arguments)
            # A route may read the token where its provider's SDK sends a key, and answer in its shape.
            caller = await getattr(view, "authenticate", views.authenticate)(request)
            return await view(request, send, caller, **arguments)
        except GatewayError as error:
            note_error(error.code)
            return getattr(view, "error_answer", views.error_answer)(error)
        except DATABASE_DOWN as error:
            note_error("database_unavailable")
            logger.warning("Database unavailable while serving %s %s: %s", request.method, request.path,
                           type(error).__name__)
            return json_answer(503, error_body("database_unavailable", MESSAGE, "server_error"),
                               {"Retry-After": str(RETRY_AFTER_SECONDS), "Cache-Control": "no-store"})
        except ClientGone:
            raise
        except Exception:
            note_error("internal_error")
            logger.exception("Gateway error serving %s %s", request.method, request.path)
            return json_answer(500, error_body("internal_error", "Server error.", "server_error"))

    async def respond(self, request: Request, send: Send, answer: Answer) -> None:
        """Send a whole answer; a body left unread (the answer came first) is drained or the connection closed."""
        if not request.body_done and not await request.drain():
            answer.headers["Connection"] = "close"
        await send_answer(send, request, answer)

    async def refuse(self, request: Request, send: Send, error: GatewayError) -> None:
        await self.respond(request, send, views.error_answer(error))


def note_error(code: str) -> None:
    if (call := usage.current()) is not None:
        call.error = code


def error_body(code: str, message: str, type_: str = "invalid_request_error") -> dict:
    return {"error": {"message": message, "type": type_, "code": code}}
