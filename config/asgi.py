"""The ASGI application the server runs: the gateway and /healthz in front of Django, one access log.

- `/gateway/...` routes go to the gateway's own ASGI app (gateway/app.py): no thread per call, no database
  connection held while a stream streams.
- `GET /healthz` is answered in front of Django on a database thread of its own (core/health.py), so a
  load balancer's probe never waits behind gateway traffic.
- Everything else (pages, admin, API, static files) is Django, served as a WSGI thread would serve it: one
  trip from the loop to a page thread a request (config/page_handler.py).

Lifespan: at startup the loop is adopted as the server's (the provider client keeps its connection pools on
it); at shutdown the provider connections and database threads are closed, and the usage recorded so far and
the tokens calls spent from budgets are written.
"""

import asyncio
import gc
import logging
import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402  (after the settings are set up)
from django.db import connections as db_connections  # noqa: E402

from config.page_handler import PageHandler  # noqa: E402
from core.asgi_http import printable  # noqa: E402
from core.health import HEALTH_THREAD, healthz_asgi  # noqa: E402
from gateway.app import GatewayApp  # noqa: E402
from gateway.limits import PENDING_TOKENS  # noqa: E402
from gateway.views import DATABASE  # noqa: E402
from providers import upstream  # noqa: E402
from usage.recorder import RECORDER  # noqa: E402

django_application = PageHandler(settings.PAGE_THREADS)
access_log = logging.getLogger("access")
# Django's handler receives a request's whole body before any middleware sees it: a body without a declared
# length (chunked) that grows past the largest any page or API call takes is cut off there (the client is
# treated as gone). A declared length over a surface's limit is answered 413 (core/body_limits.py).
MAX_SITE_BODY = 4 * 1024 * 1024


class Site:
    """Routes each request to the part of the product that answers it; writes one access-log line each."""

    def __init__(self, django_app):
        self.django = django_app
        self.gateway = GatewayApp()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        if scope["type"] != "http":
            await self.django(scope, receive, send)
            return
        upstream.serve_on_running_loop()
        if settings.ACCESS_LOG:
            send = AccessLogged(scope, send)
        if self.gateway.handles(scope):
            await self.gateway(scope, receive, send)
        elif scope["path"] == "/healthz":
            await healthz_asgi(scope, receive, send)
        else:
            await self.django(scope, BoundedBody(receive, MAX_SITE_BODY), send)
        if settings.ACCESS_LOG:
            send.log()

    async def lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                upstream.serve_on_running_loop()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await upstream.close_sessions()
                # The calls served so far are written before the worker exits (on a thread: it waits for the database).
                await asyncio.get_running_loop().run_in_executor(None, write_recorded_usage)
                DATABASE.shutdown()
                HEALTH_THREAD.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return


def write_recorded_usage() -> None:
    try:
        PENDING_TOKENS.stop()  # the tokens calls spent from budgets, not written yet
        RECORDER.stop()
    finally:
        db_connections.close_all()  # this thread's, opened for the write


class BoundedBody:
    """`receive` for Django, ending a request whose body passes `limit` bytes as if its client had gone."""

    __slots__ = ("receive", "limit", "size")

    def __init__(self, receive, limit: int):
        self.receive, self.limit, self.size = receive, limit, 0

    async def __call__(self):
        message = await self.receive()
        if message["type"] == "http.request":
            self.size += len(message.get("body", b""))
            if self.size > self.limit:
                return {"type": "http.disconnect"}
        return message


class AccessLogged:
    """Wraps `send` to note the status and size, for a line like gunicorn's: host "METHOD path" status size ms.

    Never headers or query strings; control characters in the path are escaped, so nothing a client sends can
    forge a second line.
    """

    __slots__ = ("scope", "send", "status", "size", "started")

    def __init__(self, scope, send):
        self.scope, self.send, self.status, self.size, self.started = scope, send, 0, 0, time.monotonic()

    async def __call__(self, message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        elif message["type"] == "http.response.body":
            self.size += len(message.get("body", b""))
        await self.send(message)

    def log(self) -> None:
        client = (self.scope.get("client") or ("-",))[0]
        milliseconds = (time.monotonic() - self.started) * 1000
        access_log.info('%s "%s %s" %s %s %.0fms', client, printable(self.scope["method"]),
                        printable(self.scope["path"]), self.status, self.size, milliseconds)


application = Site(django_application)
# What is loaded by now (Django, the apps, the catalogue, compiled statements) lives as long as the process:
# kept out of the collector's full collections, which would otherwise walk all of it again and again while a
# large list's rows come and go.
gc.freeze()
