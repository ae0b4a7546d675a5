"""gunicorn's gthread worker, serving a keep-alive client's next request on the same thread when it comes at once.

After every response gthread hands the connection back to its main thread, which waits for the next
request and hands it to a pool thread again: two thread switches and a trip through the poller per
request, and usually a different thread (another database connection, colder caches) each time. A client
that sends its next request right away (an SDK in a loop, a proxy reusing its connections) pays that on
every call, a measurable part of the gateway's overhead (bench/gateway.py).

Like Puma's "fast-track keep-alive", this worker lets the thread that answered wait a few milliseconds for
that next request and serve it itself. It only waits while another thread of the pool is idle, so a
waiting thread never holds up a request on another connection; after the wait the connection goes back
to the poller exactly as gthread does it.
"""

import select
import threading

from gunicorn.workers.gthread import ThreadWorker

FAST_TRACK_SECONDS = 0.005


class FastTrackThreadWorker(ThreadWorker):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._busy_threads = 0
        self._busy_lock = threading.Lock()

    def handle(self, conn):
        with self._busy_lock:
            self._busy_threads += 1
        try:
            while True:
                keepalive = super().handle(conn)
                if keepalive is not True or not self.next_request_comes_at_once(conn):
                    return keepalive
        finally:
            with self._busy_lock:
                self._busy_threads -= 1

    def next_request_comes_at_once(self, conn) -> bool:
        """Whether the client sends its next request within FAST_TRACK_SECONDS, waited for only while a thread is idle."""
        if not self.alive or self._busy_threads >= self.cfg.threads:
            return False
        readable = select.poll()
        readable.register(conn.sock, select.POLLIN)
        return bool(readable.poll(FAST_TRACK_SECONDS * 1000))
