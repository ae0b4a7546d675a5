"""What the gateway's upstream client costs per call, against a fake OpenAI in another process.

Compares, interleaved in rounds so that drift hits all alike:
  direct   a plain httpx.Client posting the same chat request
  adapter  OpenAIAdapter.invoke() with the Connection and Endpoint already loaded
  +load    loading Endpoint+Connection from the database (decrypting the key), then invoke(): a route's work
sequentially and with 16 threads sharing the process's client. Prints p50/p99 latency, calls/s and this
process's CPU per call (the fake's CPU is not counted: it runs in its own process).

    .venv/bin/python bench/upstream_client.py [--calls 2000] [--rounds 5]
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
# A file, not :memory:, so that the 16 threads (one database connection each) see the same tables.
DATABASE_FILE = Path(tempfile.mkdtemp(prefix="bench-upstream-")) / "bench.sqlite3"
os.environ["TEST_DATABASE_URL"] = f"sqlite:///{DATABASE_FILE}"

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.core.management import call_command  # noqa: E402

from connections.models import Connection  # noqa: E402
from connections.services import connection_save  # noqa: E402
from endpoints.models import Endpoint  # noqa: E402
from providers.adapters import adapter_for  # noqa: E402

KEY = "sk-bench-0123456789abcdefghijklmnopqrstuvwxyz"
BODY = {"model": "bench-chat", "messages": [{"role": "user", "content": "Say hello"}]}


def start_fake() -> tuple[subprocess.Popen, str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.openai"], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    return process, process.stdout.readline().strip()


def set_up(base_url: str) -> Endpoint:
    call_command("migrate", verbosity=0)
    connection = Connection(name="bench", provider="openai", auth_method="api_key", config={"base_url": base_url})
    connection.update_secrets({"api_key": KEY})
    connection.full_clean()
    connection_save(connection=connection, actor=None)
    endpoint = Endpoint(name="bench-chat", connection=connection, model="gpt-4o-mini")
    endpoint.full_clean()
    endpoint.save()
    return Endpoint.objects.select_related("connection").get(pk=endpoint.pk)


def callers(base_url: str, endpoint: Endpoint) -> dict:
    direct_client = httpx.Client()
    adapter = adapter_for("openai")
    url = f"{base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {KEY}"}

    def direct() -> None:
        response = direct_client.post(url, json={**BODY, "model": "gpt-4o-mini"}, headers=headers)
        assert response.status_code == 200
        response.json()

    def through_adapter() -> None:
        assert adapter.invoke(endpoint.connection, endpoint, BODY)["choices"]

    def load_and_adapter() -> None:
        loaded = Endpoint.objects.select_related("connection").get(name="bench-chat")
        assert adapter.invoke(loaded.connection, loaded, BODY)["choices"]

    return {"direct": direct, "adapter": through_adapter, "+load": load_and_adapter}


def timed(call) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def run_batch(call, calls: int, threads: int) -> tuple[list[float], float, float]:
    """(latencies ms, wall seconds, CPU seconds of this process)."""
    cpu, wall = time.process_time(), time.perf_counter()
    if threads == 1:
        latencies = [timed(call) for _ in range(calls)]
    else:
        with ThreadPoolExecutor(threads) as pool:
            latencies = list(pool.map(lambda _: timed(call), range(calls)))
    return latencies, time.perf_counter() - wall, time.process_time() - cpu


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="calls per mode and concurrency, over all rounds")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    fake, base_url = start_fake()
    try:
        base_url += "/v1"
        modes = callers(base_url, set_up(base_url))
        for call in modes.values():  # warm up: connections, SSL context, first query
            for _ in range(50):
                call()
        per_round = max(1, args.calls // args.rounds)
        for threads in (1, 16):
            results = {name: ([], 0.0, 0.0) for name in modes}
            for _ in range(args.rounds):
                for name, call in modes.items():
                    latencies, wall, cpu = run_batch(call, per_round, threads)
                    old = results[name]
                    results[name] = (old[0] + latencies, old[1] + wall, old[2] + cpu)
            report(threads, results)
    finally:
        fake.terminate()
        fake.wait()
        shutil.rmtree(DATABASE_FILE.parent, ignore_errors=True)


def report(threads: int, results: dict) -> None:
    print(f"\n{'sequential' if threads == 1 else f'{threads} threads'}")
    print(f"{'mode':8} {'p50 ms':>8} {'p99 ms':>8} {'calls/s':>9} {'CPU ms/call':>12}")
    base_p50 = statistics.median(results["direct"][0])
    for name, (latencies, wall, cpu) in results.items():
        print(
            f"{name:8} {statistics.median(latencies):8.3f} {percentile(latencies, 0.99):8.3f} "
            f"{len(latencies) / wall:9.0f} {cpu * 1000 / len(latencies):12.3f}"
            + (f"   ({statistics.median(latencies) - base_p50:+.3f} ms p50 vs direct)" if name != "direct" else "")
        )


if __name__ == "__main__":
    main()
