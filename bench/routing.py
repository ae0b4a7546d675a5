"""Benchmark: what routing costs a gateway call in-process, one destination against a three-way split. Not a test.

Times, on a throwaway SQLite file (or the database given), the endpoint read the gateway does on every call
(`Endpoint.objects.for_call`), building the chosen destination's connection (its secrets decrypted) and
`gateway.routing.plan`, for an endpoint with one destination and one split over three connections.

    .venv/bin/python bench/routing.py [--calls 20000] [--database-url postgres://...]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--database-url", help="a database to create its rows in (default: a throwaway SQLite "
                                               "file, as `make run` serves)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-routing-") as directory:
        # The test settings read their database from TEST_DATABASE_URL.
        os.environ["TEST_DATABASE_URL"] = options.database_url or f"sqlite:///{directory}/bench.sqlite3"
        measure(options.calls)


def measure(calls: int) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    import django

    django.setup()
    from django.core.management import call_command
    from django.utils import timezone

    from connections.models import Connection
    from endpoints.models import Endpoint
    from endpoints.services import endpoint_save
    from endpoints.models import Destination
    from gateway import routing

    call_command("migrate", verbosity=0)
    from django.db import connection as database

    print(f"database: {database.display_name}")
    connections = []
    for name in ("one", "two", "three"):
        connection = Connection(name=name, provider="openai", auth_method="api_key", config={})
        connection.update_secrets({"api_key": f"sk-bench-{name}-0123456789abcdefghij"})
        connection.save()
        connections.append(connection)
    endpoint_save(endpoint=Endpoint(name="single", task="chat"), actor=None,
                  destinations=[Destination(connection=connections[0], model="m", weight=100)])
    endpoint_save(endpoint=Endpoint(name="split", task="chat"), actor=None, destinations=[
        Destination(connection=c, model="m", weight=w) for c, w in zip(connections, (34, 33, 33))])

    def one_call(name: str) -> float:
        started = time.perf_counter()
        endpoint = Endpoint.objects.for_call(name)
        route = routing.plan(endpoint, timezone.now())[0]
        route.connection().account()
        return (time.perf_counter() - started) * 1e6

    for name in ("single", "split"):
        for _ in range(1000):
            one_call(name)
    results = {"single": [], "split": []}
    for _ in range(calls // 100):  # interleaved, so that drift hits both alike
        for name in results:
            results[name].extend(one_call(name) for _ in range(100))
    p50 = {name: statistics.median(values) for name, values in results.items()}
    for name, values in results.items():
        print(f"{name:6}  read + plan + account p50 {p50[name]:7.1f} µs  p99 "
              f"{statistics.quantiles(values, n=100)[98]:7.1f} µs")
    print(f"three-destination split: {p50['split'] - p50['single']:+.1f} µs p50 over one destination")


if __name__ == "__main__":
    main()
