"""gunicorn settings for `make run`: ASGI workers (config/workers.py), a timeout above the gateway's own."""

import os

_port = os.environ.get("PORT", "5000")
_host = os.environ.get("HOST", "127.0.0.1")

bind = [f"{_host}:{_port}"]
wsgi_app = "config.asgi:application"
worker_class = "config.workers.GatewayWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Each worker's event loop serves every connection; a worker that stops answering gunicorn's heartbeat
# for this long is replaced. Above the gateway's own timeout, so a slow provider is answered first.
timeout = int(float(os.environ.get("GATEWAY_TIMEOUT", "60"))) + 30
graceful_timeout = 30
# Workers touch a heartbeat file: on tmpfs that costs nothing measurable (on disk it does).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
keepalive = 5
# Pending connections the kernel keeps for each listening socket while workers are busy.
backlog = 2048
# The application writes one access-log line per request (config/asgi.py, ACCESS_LOG); gunicorn's is off.
accesslog = None
