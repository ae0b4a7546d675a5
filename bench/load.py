"""Load on loopback: concurrent API reads and writes and gateway calls against the served app. Not a test.

Starts bench/gateway.py's stub upstream and the app as `make run` serves it (gunicorn, throwaway SQLite or
--database-url), then runs --concurrency keep-alive clients for --seconds (or until --max-requests). Each
client repeats one cycle over connections and endpoints of its own: create a connection and an endpoint,
list and read both, rotate the key (PATCH secrets), call the gateway three times (through the stub's
connection), delete the endpoint and the connection, so the database stays the same size. Prints requests/s,
p50/p99 per kind, errors (any unexpected status or transport error; must be 0), the server's CPU per
request and its memory (RSS of gunicorn master + workers from /proc) after warm-up and at the end, which
must stay within 10%. Exits 1 when either check fails. Every address is 127.0.0.1.

    .venv/bin/python bench/load.py [--seconds 60] [--concurrency 8] [--stub-delay 0]
"""

import argparse
import multiprocessing
import os
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.*` (and not the `gateway` app's name)

from bench.gateway import CHAT, STUB_KEY, cpu_seconds, free_port, percentile, run_stub  # noqa: E402
from bench.served import app_env, load_average, prepare, rss_mb, server_pids, serving, wait_for  # noqa: E402

MAX_SECONDS = 3600
MAX_CONCURRENCY = 64
MEMORY_TOLERANCE = 0.10
GATEWAY_ENDPOINT = "load-chat"
KINDS = (
    "create connection", "create endpoint", "list connections", "list endpoints", "read connection",
    "read endpoint", "rotate key", "gateway chat", "delete endpoint", "delete connection",
)


class Tally:
    """Latencies per kind and errors, shared by the client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: list[str] = []
        self.count = 0

    def record(self, kind: str, milliseconds: float, error: str | None) -> None:
        with self.lock:
            self.latencies[kind].append(milliseconds)
            self.count += 1
            if error:
                self.errors.append(f"{kind}: {error}")


def client_cycle(client: httpx.Client, name: str, tally: Tally, stub_url: str) -> None:
    """One round of every kind of request, on a connection and endpoint named after this client and round."""
    connection = {"name": name, "provider": "openai", "auth_method": "api_key",
                  "secrets": {"api_key": f"sk-load-{name}-0123456789abcdef"}, "config": {"base_url": f"{stub_url}/v1"}}
    endpoint = {"name": f"{name}-e", "connection": name, "model": "gpt-4o-mini", "task": "chat"}
    steps = [
        ("create connection", "POST", "/api/v1/connections/", connection, 201),
        ("create endpoint", "POST", "/api/v1/endpoints/", endpoint, 201),
        ("list connections", "GET", "/api/v1/connections/", None, 200),
        ("read connection", "GET", f"/api/v1/connections/{name}/", None, 200),
        ("rotate key", "PATCH", f"/api/v1/connections/{name}/", {"secrets": {"api_key": f"sk-rotated-{name}-x1"}}, 200),
        ("gateway chat", "POST", "/gateway/v1/chat/completions", CHAT | {"model": GATEWAY_ENDPOINT}, 200),
        ("list endpoints", "GET", "/api/v1/endpoints/", None, 200),
        ("read endpoint", "GET", f"/api/v1/endpoints/{name}-e/", None, 200),
        ("gateway chat", "POST", "/gateway/v1/chat/completions", CHAT | {"model": GATEWAY_ENDPOINT}, 200),
        ("delete endpoint", "DELETE", f"/api/v1/endpoints/{name}-e/", None, 204),
        ("gateway chat", "POST", "/gateway/v1/chat/completions", CHAT | {"model": GATEWAY_ENDPOINT}, 200),
        ("delete connection", "DELETE", f"/api/v1/connections/{name}/", None, 204),
    ]
    for kind, method, path, body, expected in steps:
        started = time.perf_counter()
        try:
            response = client.request(method, path, json=body)
            error = None if response.status_code == expected else f"{response.status_code} {response.text[:200]}"
        except httpx.HTTPError as failure:
            error = f"{type(failure).__name__}: {failure}"
        tally.record(kind, (time.perf_counter() - started) * 1000, error)


def run_clients(base_url: str, auth: dict, stub_url: str, seconds: float, concurrency: int, max_requests: int,
                prefix: str) -> tuple[Tally, float]:
    """Every client cycles until the deadline or the request budget; returns the tally and the wall time."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    def client_loop(number: int) -> None:
        with httpx.Client(base_url=base_url, headers=auth, timeout=30) as client:
            cycle = 0
            while time.monotonic() < deadline and tally.count < max_requests:
                client_cycle(client, f"{prefix}-{number}-{cycle}", tally, stub_url)
                cycle += 1

    threads = [threading.Thread(target=client_loop, args=(number,)) for number in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tally, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--max-requests", type=int, default=1_000_000, help="stop early after this many")
    parser.add_argument("--stub-delay", type=float, default=0.0, help="stub answer delay in ms")
    parser.add_argument("--database-url", help="serve from this database instead of a throwaway SQLite file")
    options = parser.parse_args()
    if not 0 < options.seconds <= MAX_SECONDS or not 0 < options.concurrency <= MAX_CONCURRENCY:
        parser.error(f"--seconds must be in (0, {MAX_SECONDS}] and --concurrency in [1, {MAX_CONCURRENCY}]")

    stub_port, app_port = free_port(), free_port()
    stub = multiprocessing.Process(target=run_stub, args=(stub_port, options.stub_delay / 1000), daemon=True)
    stub.start()
    stub_url = f"http://127.0.0.1:{stub_port}"
    try:
        with tempfile.TemporaryDirectory(prefix="bench-load-") as directory:
            env = app_env(directory, app_port, options.database_url)
            token = prepare(env)
            with serving(env, token) as served:
                wait_for(stub_url)
                httpx.post(f"{served.url}/api/v1/connections/", headers=served.auth, json={
                    "name": "load-stub", "provider": "openai", "auth_method": "api_key",
                    "secrets": {"api_key": STUB_KEY}, "config": {"base_url": f"{stub_url}/v1"}}).raise_for_status()
                httpx.post(f"{served.url}/api/v1/endpoints/", headers=served.auth, json={
                    "name": GATEWAY_ENDPOINT, "connection": "load-stub", "model": "gpt-4o-mini", "task": "chat",
                }).raise_for_status()
                # Warm-up: every worker thread imports, connects and fills its caches before memory is read.
                warm, _ = run_clients(served.url, served.auth, stub_url, 2, options.concurrency, 10_000, "warm")
                rss_start, load_start = rss_mb(served.pid), load_average()
                cpu_start = cpu_seconds(served.pid)
                tally, wall = run_clients(served.url, served.auth, stub_url, options.seconds, options.concurrency,
                                          options.max_requests, "load")
                cpu = cpu_seconds(served.pid) - cpu_start
                rss_end, load_end = rss_mb(served.pid), load_average()
                workers = len(server_pids(served.pid)) - 1
    finally:
        stub.terminate()

    errors = warm.errors + tally.errors
    print(f"load: {wall:.1f} s, {options.concurrency} clients, stub delay {options.stub_delay:g} ms, "
          f"{os.cpu_count()} cores, load average {load_start} (start) {load_end} (end)")
    print(f"{'kind':<20}{'requests':>10}{'p50 ms':>10}{'p99 ms':>10}")
    for kind in KINDS:
        values = tally.latencies.get(kind, [])
        if values:
            print(f"{kind:<20}{len(values):>10}{percentile(values, 50):>10.2f}{percentile(values, 99):>10.2f}")
    print(f"total: {tally.count} requests in {wall:.1f} s = {tally.count / wall:.1f} requests/s")
    print(f"errors: {len(errors)}")
    for error in errors[:10]:
        print(f"  {error}")
    print(f"server CPU: {cpu * 1000 / max(tally.count, 1):.2f} ms/request")
    growth = (rss_end - rss_start) / rss_start
    verdict = "flat within 10%" if abs(growth) <= MEMORY_TOLERANCE else "NOT flat within 10%"
    print(f"server memory (RSS, master + {workers} workers): start {rss_start:.1f} MB, end {rss_end:.1f} MB "
          f"({growth:+.1%}): {verdict}")
    if errors or abs(growth) > MEMORY_TOLERANCE:
        sys.exit(1)


if __name__ == "__main__":
    main()
