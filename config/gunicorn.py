"""gunicorn settings for `make run`: ASGI workers (config/workers.py), a timeout above the gateway's own."""

import os
import tempfile
from pathlib import Path

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

# Prometheus' multiprocess mode (usage/metrics.py): each worker writes its counts to files here, and a scrape of
# any worker adds them all up. Set before any worker imports prometheus_client; emptied when the server starts.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="llmc-metrics-")


def on_starting(server) -> None:
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    metrics_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    for stale in metrics_dir.glob("*.db"):
        stale.unlink()


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


WORKER_CPU_AFFINITY = os.environ.get("WORKER_CPU_AFFINITY", "auto")
if WORKER_CPU_AFFINITY not in ("auto", "off"):
    raise SystemExit(f"WORKER_CPU_AFFINITY must be auto or off, not {WORKER_CPU_AFFINITY!r}.")


def pre_fork(server, worker) -> None:
    """Give the worker about to start a core of its own (the first no live worker holds), when there are
    cores enough: a call's hand-offs between the event loop and its database threads stay on one core, whose
    caches hold both (README, Serving)."""
    cores = sorted(os.sched_getaffinity(0))
    if WORKER_CPU_AFFINITY == "off" or server.num_workers > len(cores):
        worker.core = None
        return
    held = {getattr(live, "core", None) for live in server.WORKERS.values()}
    worker.core = next((core for core in cores if core not in held), None)


def post_fork(server, worker) -> None:
    # Only the worker's main thread exists yet: the threads it starts inherit its core.
    if getattr(worker, "core", None) is not None:
        os.sched_setaffinity(0, {worker.core})
