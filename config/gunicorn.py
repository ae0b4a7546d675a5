"""gunicorn settings for `make run`: gthread workers, a timeout above the gateway's upstream timeout."""

import os

_port = os.environ.get("PORT", "5000")
_host = os.environ.get("HOST", "127.0.0.1")

bind = [f"{_host}:{_port}"]
# gthread, serving a keep-alive client's next request on the same thread when it comes at once (config/workers.py).
worker_class = "config.workers.FastTrackThreadWorker"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "8"))
# A long generation must not be killed by the worker timeout before the gateway's own timeout answers.
timeout = int(float(os.environ.get("GATEWAY_TIMEOUT", "60"))) + 30
graceful_timeout = 30
# Workers touch a heartbeat file twice a request: on tmpfs that costs nothing measurable (on disk it does).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
keepalive = 5
# ACCESS_LOG=false leaves request logging to the proxy in front (each line costs CPU on every request).
accesslog = "-" if os.environ.get("ACCESS_LOG", "true").lower() not in ("0", "false", "no", "off") else None
# Never log query strings or headers: the access log line is method, path, status, size and time only.
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
