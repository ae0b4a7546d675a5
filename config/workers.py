"""The gunicorn worker `make run` serves with: uvicorn's ASGI worker, set up for many long streams.

gunicorn stays the process manager (workers, graceful reloads on SIGHUP, restarts, its control socket); each
worker runs uvicorn's event loop (uvloop, httptools) with config/asgi.py's application, so a worker holds any
number of calls and streams at once instead of one per thread.
"""

import os

from uvicorn_worker import UvicornWorker


def int_env(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


class GatewayWorker(UvicornWorker):
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": "httptools",
        "lifespan": "on",  # the application adopts the loop at startup and closes its pools at shutdown
        # Connections and tasks a worker takes at once; past it uvicorn answers 503 at once instead of
        # queueing. Above the gateway's own limit (GATEWAY_MAX_IN_FLIGHT), which answers in OpenAI's shape.
        "limit_concurrency": int_env("SERVER_MAX_CONNECTIONS", 4096),
        "server_header": False,
        # The application reads X-Forwarded-For and -Proto itself, and only with BEHIND_PROXY (settings.py).
        "proxy_headers": False,
        "access_log": False,  # the application writes its own line (config/asgi.py)
    }
