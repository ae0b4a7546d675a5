"""A test client for the ASGI application the server runs (config/asgi.py), in the test's own thread.

It speaks like Django's test client (`get`, `post`, `generic`, `HTTP_*` keyword headers, `defaults`) and drives
the whole site: the gateway and /healthz in front of Django, then Django (config/page_handler.py). The
database work of a request runs on the test's thread (core/db_threads.py `on_callers_thread`, which the page handler honours too, and Django's own
thread-sensitive calls), so it sees the rows the test made inside its transaction.
"""

import json
import re
from contextlib import contextmanager
from http.cookies import SimpleCookie
from urllib.parse import unquote, urlencode

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.http import HttpResponse

from config.asgi import Site  # imported early: importing it sets Django up, and with it the logging, again
from config.page_handler import PageHandler
from core.db_threads import on_callers_thread
from providers import upstream


FORM = "application/x-www-form-urlencoded"
CSRF_TOKEN = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')


class AsgiResponse:
    """What a test reads of an answer; like Django's test response where the tests need it."""

    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], chunks: list[bytes]):
        self.status_code = status
        self.header_list = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in headers]
        self.headers = {}
        for name, value in self.header_list:
            self.headers.setdefault(name.lower(), value)
        self.chunks = chunks
        self.content = b"".join(chunks)
        self.cookies = SimpleCookie()
        for name, value in self.header_list:
            if name.lower() == "set-cookie":
                self.cookies.load(value)
        self.reason_phrase = HttpResponse(status=status).reason_phrase
        self.charset = "utf-8"

    def __getitem__(self, name: str) -> str:
        return self.headers[name.lower()]

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)

    def has_header(self, name: str) -> bool:
        return name.lower() in self.headers

    @property
    def streaming(self) -> bool:
        return self.headers.get("content-type", "").startswith("text/event-stream")

    @property
    def streaming_content(self) -> list[bytes]:
        return [self.content]

    def json(self):
        return json.loads(self.content)

    @property
    def text(self) -> str:
        return self.content.decode()

    def __repr__(self) -> str:
        return f"<AsgiResponse {self.status_code}>"


@contextmanager
def database_kept_open():
    """As Django's test client does: a request's end does not close the test's connection (its transaction)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


class AsgiClient:
    """Requests to the served site from the test thread; `defaults` are extra `HTTP_*` headers for every request."""

    def __init__(self, app=None, **defaults):
        self._app = app
        self.defaults = defaults
        self.cookies = SimpleCookie()

    @property
    def app(self):
        if self._app is None:
            # A fresh site per client, set up at its first request as Django's test client does: middleware
            # reads the settings when it is set up, and a test may have changed them after making the client.
            self._app = Site(PageHandler(settings.PAGE_THREADS))  # (not get_asgi_application(): it would set logging up again)
        return self._app

    def force_login(self, user) -> None:
        """Sign `user` in, as Django's test client does, and keep the session cookie."""
        from django.test import Client

        django_client = Client()
        django_client.force_login(user)
        for name, morsel in django_client.cookies.items():
            self.cookies[name] = morsel.value

    def get(self, path: str, **extra) -> AsgiResponse:
        return self.generic("GET", path, **extra)

    def post(self, path: str, data=b"", content_type: str = "application/json", **extra) -> AsgiResponse:
        if not isinstance(data, (bytes, str)):
            data = urlencode(data) if content_type == FORM else json.dumps(data)
        return self.generic("POST", path, data, content_type=content_type, **extra)

    def submit(self, path: str, fields: dict, **extra) -> AsgiResponse:
        """A form on `path` filled in and sent as a browser does: its page first (for the CSRF cookie and token)."""
        page = self.get(path, **extra)
        token = CSRF_TOKEN.search(page.content.decode())
        return self.post(path, {**fields, "csrfmiddlewaretoken": token[1] if token else ""}, content_type=FORM,
                         HTTP_REFERER=f"http://testserver{path}", **extra)

    def generic(self, method: str, path: str, data=b"", content_type: str | None = None, **extra) -> AsgiResponse:
        body = data.encode() if isinstance(data, str) else data
        headers = [(b"host", b"testserver")]
        if content_type:
            headers.append((b"content-type", content_type.encode()))
        if body:
            headers.append((b"content-length", str(len(body)).encode()))
        for key, value in {**self.defaults, **extra}.items():
            if key.startswith("HTTP_"):
                headers.append((key[5:].replace("_", "-").lower().encode("latin-1"), str(value).encode("latin-1")))
        if self.cookies:
            cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in self.cookies.items())
            headers.append((b"cookie", cookie.encode()))
        raw_path, _, query = path.partition("?")
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
            "path": unquote(raw_path), "raw_path": raw_path.encode(), "query_string": query.encode(),
            "root_path": "", "headers": headers, "client": (extra.get("REMOTE_ADDR", self.defaults.get("REMOTE_ADDR",
                                                                                                 "127.0.0.1")), 50000),
            "server": ("testserver", 80),
        }
        return self.run(scope, [body])

    def run(self, scope: dict, body_parts: list[bytes]) -> AsgiResponse:
        started: dict = {}
        chunks: list[bytes] = []
        incoming = [{"type": "http.request", "body": part, "more_body": i < len(body_parts) - 1}
                    for i, part in enumerate(body_parts)]

        async def receive():
            if incoming:
                return incoming.pop(0)
            if started.get("done"):
                return {"type": "http.disconnect"}
            # The answer is still being sent: the client is still there.
            import asyncio

            while not started.get("done"):
                await asyncio.sleep(0.01)
            return {"type": "http.disconnect"}

        async def send(message):
            if message["type"] == "http.response.start":
                started.update(status=message["status"], headers=message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    started["done"] = True

        async def drive():
            import asyncio

            try:
                await self.app(scope, receive, send)
            finally:
                started["done"] = True
                # Bookkeeping the app left running after its answer (a connection's last use) finishes, as it
                # would in a server, before this request's loop goes away and cancels it.
                if pending := asyncio.all_tasks() - {asyncio.current_task()}:
                    await asyncio.wait(pending, timeout=10)
                await upstream.close_sessions()

        with on_callers_thread(), database_kept_open():
            async_to_sync(drive)()
        response = AsgiResponse(started.get("status", 500), started.get("headers", []), chunks)
        for name, morsel in response.cookies.items():
            self.cookies[name] = morsel.value
        return response
