"""Django's pages, admin and API under the ASGI server, each request served the way a WSGI thread serves it.

Django's own ASGIHandler runs a synchronous project in several trips between the event loop and threads
(the request signal, the middleware chain, the view, the response's close), and gives each request a thread
of its own, so each request also opens a new database connection. Every part of this project's pages is
synchronous, so PageHandler loads the middleware chain in its synchronous form (as WSGI does) and serves a
request in one trip to one of a fixed set of page threads: the request signal, the chain and the view, and
the response's close (which gives the thread's database connection back to the pool, or keeps it, as the
settings say). Each page thread keeps its connection between requests like a WSGI server's thread.

A request goes to the page thread with the fewest requests in hand; past PAGE_THREADS requests at once they
wait for a thread, as they would for a WSGI server's threads. The gateway and /healthz never use these
threads (config/asgi.py routes them elsewhere).
"""

from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers import base
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.http import FileResponse, HttpResponse
from django.urls import set_script_prefix

from core.db_threads import callers_thread_wanted


class PageThread:
    """One thread for page requests, and how many requests are in its hands (counted on the event loop)."""

    __slots__ = ("executor", "in_hand")

    def __init__(self, name: str):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self.in_hand = 0

    async def run(self, function, *args):
        if callers_thread_wanted():  # an in-process test client, whose transaction lives on its own thread
            return await sync_to_async(function, thread_sensitive=True)(*args)
        # asgiref's wrapper rather than run_in_executor: the page's code sees the request's context variables,
        # and its async_to_sync (a provider test) runs on the server's loop as under Django's own handler.
        return await sync_to_async(function, thread_sensitive=False, executor=self.executor)(*args)


class PageHandler(ASGIHandler):
    def __init__(self, threads: int):
        base.BaseHandler.__init__(self)
        self.load_middleware(is_async=False)
        self.threads = [PageThread(f"page-{number}") for number in range(threads)]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"Django serves HTTP only, not {scope['type']}.")
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        thread = min(self.threads, key=lambda each: each.in_hand)
        thread.in_hand += 1
        try:
            response, closed = await thread.run(self.respond, scope, body_file)
            try:
                await self.send_response(response, send)
            finally:
                if not closed:
                    await thread.run(response.close)
        finally:
            thread.in_hand -= 1

    def respond(self, scope, body_file) -> tuple[HttpResponse, bool]:
        """On a page thread: the request's whole synchronous life, up to a response ready to send.

        A response is closed here (the request is over: the connection goes back), unless its content comes
        from an async iterator, which is read on the loop. The chunks of a synchronous stream (a static file)
        are read here, as Django's handler reads them into a list before sending.
        """
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is None:
            body_file.close()
        else:
            response = self.get_response(request)
        response._handler_class = self.__class__
        if isinstance(response, FileResponse):
            response.block_size = self.chunk_size
        if response.streaming and response.is_async:
            return response, False
        chunks = list(response.streaming_content) if response.streaming else None
        response.close()
        if chunks is not None:
            response.streaming_content = replayed(chunks)
        return response, True


async def replayed(chunks: list[bytes]):
    for chunk in chunks:
        yield chunk
