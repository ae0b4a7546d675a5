"""Benchmark: what usage tracking costs a gateway call, and what 100 calls/s for 30 days costs the database and
the Usage tab. Not a test.

1. The call's path: what the gateway does per call for usage (note the call, read the answer's usage, hand
   it to the buffer), timed in-process over many calls; and the stream meter's cost per chunk.
2. With --database-url (PostgreSQL, as `make bench` gives it): 30 days of hourly totals at 100 calls/s spread
   over 300 endpoint × token × model keys an hour (and the daily totals), plus 15 minutes of call rows
   (90,000) written by the writer's own code in its batches (its throughput), then bytes per call and per
   hourly row, what the retention keeps on disk, the Usage tab's time for 24 hours, 7 and 30 days, the
   API's, the lists', and the purge's.

    .venv/bin/python bench/usage.py [--database-url postgres://...]
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CALLS_PER_SECOND = 100
DAYS = 30
ENDPOINTS, TOKENS, MODELS = 12, 25, 1  # 300 keys with traffic each hour
RAW_MINUTES = 15  # of call rows written (bytes per call, the writer's throughput, the purge)
TARGET_PATH_US = 100  # ≤ 0.1 ms per call
TARGET_PAGE_MS = 300


def setup(database_url: str | None) -> None:
    directory = tempfile.mkdtemp(prefix="bench-usage-")
    os.environ.update({
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ENV_FILE": f"{directory}/absent.env",
        "SECRET_KEY": "bench-secret-key-" + "x" * 40,
        "FIELD_ENCRYPTION_KEY": "Ju6CElcGyMt7kuiADmOZZnQFNSAKFe27lQ9O8mKb5F4=",
        "DATABASE_URL": database_url or f"sqlite:///{directory}/bench.sqlite3",
        "ALLOWED_HOSTS": "testserver,localhost",
        "ACCESS_LOG": "false",
        "LOG_LEVEL": "WARNING",
    })
    import django

    django.setup()
    from django.conf import settings

    settings.USAGE_WRITER_THREAD = False  # the bench writes itself, on its own thread


def call_path() -> list[str]:
    """µs per call of the usage work on the gateway's path, and per chunk of a metered stream."""
    import asyncio

    from usage import recorder
    from usage.meter import MeteredStream, note_answer

    answer = (b'{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"gpt-4o-mini","choices":[{"index":0,'
              b'"message":{"role":"assistant","content":"' + b"x" * 600 + b'"},"finish_reason":"stop"}],'
              b'"usage":{"prompt_tokens":120,"completion_tokens":150,"total_tokens":270}}')
    rounds, calls = 5, 100_000

    def one_round() -> float:
        recorder.RECORDER.buffer.clear()
        started = time.perf_counter()
        for _ in range(calls):
            call = recorder.begin()
            call.token_id, call.user_id = 7, 3
            call.endpoint_id, call.endpoint = 12, "chat"
            call.connection_id, call.provider, call.model = 4, "openai", "gpt-4o-mini"
            note_answer(call, answer)
            call.status = 200
            recorder.finish(call)
        return (time.perf_counter() - started) / calls * 1e6

    from django.conf import settings

    settings.USAGE_BUFFER_CALLS = calls + 1
    per_call = min(one_round() for _ in range(rounds))
    recorder.RECORDER.buffer.clear()

    chunk = b'data: {"id":"c","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"hello"}}]}\n\n'
    usage_chunk = (b'data: {"id":"c","object":"chat.completion.chunk","choices":[],'
                   b'"usage":{"prompt_tokens":7,"completion_tokens":40,"total_tokens":47}}\n\n')
    chunks = [chunk] * 199 + [usage_chunk]

    class Source:
        def __init__(self):
            self.items = iter(chunks)

        def __aiter__(self):
            return self

        async def __anext__(self):
            try:
                return next(self.items)
            except StopIteration:
                raise StopAsyncIteration from None

        async def aclose(self):
            pass

    async def relay(metered: bool) -> float:
        best = float("inf")
        for _ in range(rounds):
            streams = [Source() for _ in range(200)]
            started = time.perf_counter()
            for source in streams:
                events = MeteredStream(source, recorder.Call(at=0.0, started=0.0), hide_usage_event=True) \
                    if metered else source
                async for _ in events:
                    pass
            best = min(best, (time.perf_counter() - started) / (200 * len(chunks)) * 1e6)
        return best

    plain, metered = asyncio.run(relay(False)), asyncio.run(relay(True))
    verdict = "met" if per_call <= TARGET_PATH_US else "NOT met"
    return [
        f"Per call (begin, note caller and destination, read the answer's usage from {len(answer)} bytes, "
        f"buffer it): {per_call:.1f} µs ({verdict}: target ≤ {TARGET_PATH_US} µs)",
        f"Per stream chunk: {metered - plain:.2f} µs added by the meter ({plain:.2f} µs to iterate a chunk "
        f"unmetered, {metered:.2f} µs metered; 200 chunks a stream, the usage chunk parsed and held back)",
    ]


def database(database_url: str) -> list[str]:
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client

    from connections.models import Connection
    from endpoints.models import Endpoint
    from usage import services
    from usage.calls import Call
    from usage.models import LATENCY_FIELDS, UsageDay, UsageHour, UsageHourOverall, UsageRecord

    call_command("migrate", verbosity=0)
    admin = get_user_model().objects.create_superuser("bench", password="bench-admin-password-1")
    connection_row = Connection(name="openai-prod", provider="openai", auth_method="api_key")
    connection_row.update_secrets({"api_key": "sk-bench-0123456789abcdefghij"})
    connection_row.save()
    endpoints = [Endpoint.objects.create(name=f"chat-{n}", task="chat") for n in range(ENDPOINTS)]
    for endpoint in endpoints:
        endpoint.destinations.create(connection=connection_row, model="gpt-4o-mini", role="primary", weight=100)
    lines = []

    # 30 days of hourly totals: 100 calls/s = 360,000 calls an hour over the keys.
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    per_key = CALLS_PER_SECOND * 3600 // (ENDPOINTS * TOKENS * MODELS)
    started = time.perf_counter()

    def totals(model, period: str, moment: datetime, calls: int) -> list:
        rows = []
        for endpoint in endpoints:
            for token in range(1, TOKENS + 1):
                buckets = dict.fromkeys(LATENCY_FIELDS, 0)
                buckets["latency_le_500"], buckets["latency_le_1000"], buckets["latency_le_2500"] = (
                    calls * 6 // 10, calls * 3 // 10, calls - calls * 9 // 10)
                rows.append(model(
                    **{period: moment}, endpoint_id=endpoint.pk, connection_id=connection_row.pk, token_id=token,
                    model="gpt-4o-mini", provider="openai", last_at=moment, calls=calls, errors=calls // 50,
                    prompt_tokens=calls * 300, completion_tokens=calls * 120, cost_micros=calls * 120,
                    latency_ms_sum=calls * 700, **buckets))
        return rows

    batch = []
    for hour in range(DAYS * 24):
        batch += totals(UsageHour, "hour", now - timedelta(hours=hour), per_key)
        if len(batch) >= 20_000:
            UsageHour.objects.bulk_create(batch)
            batch = []
    UsageHour.objects.bulk_create(batch)
    keys = ENDPOINTS * TOKENS * MODELS
    for hour in range(DAYS * 24):
        [row] = totals(UsageHourOverall, "hour", now - timedelta(hours=hour), per_key * keys)[:1]
        row.endpoint_id = row.connection_id = row.token_id = 0
        row.model = row.provider = ""
        row.save()
    today = now.replace(hour=0)
    for day in range(DAYS + 1):
        UsageDay.objects.bulk_create(totals(UsageDay, "day", today - timedelta(days=day), per_key * 24))
    hours = UsageHour.objects.count()
    lines.append(f"Seeded {hours:,} hourly rows and {UsageDay.objects.count():,} daily rows ({DAYS} days × {ENDPOINTS * TOKENS * MODELS} endpoint × token × "
                 f"model keys, {CALLS_PER_SECOND} calls/s = {CALLS_PER_SECOND * 86400 * DAYS:,} calls) "
                 f"in {time.perf_counter() - started:.0f} s")

    # RAW_MINUTES of call rows through the writer's own code, in its batches.
    total = CALLS_PER_SECOND * 60 * RAW_MINUTES
    started = time.perf_counter()
    base = (now - timedelta(hours=1)).timestamp()
    flush = 500
    for first in range(0, total, flush):
        calls = [Call(at=base + (first + n) / CALLS_PER_SECOND, started=0.0, endpoint="chat",
                      endpoint_id=endpoints[(first + n) % ENDPOINTS].pk, connection_id=connection_row.pk,
                      token_id=1 + (first + n) % TOKENS, user_id=admin.pk, provider="openai", model="gpt-4o-mini",
                      status=200 if n % 50 else 502, error="" if n % 50 else "upstream_error", latency_ms=300 + n,
                      ttfb_ms=None, prompt_tokens=300, completion_tokens=120) for n in range(flush)]
        services.write_calls(calls)
    seconds = time.perf_counter() - started
    lines.append(f"Writer: {total:,} calls in batches of {flush} in {seconds:.1f} s = {total / seconds:,.0f} calls/s "
                 f"({seconds / (total / flush) * 1000:.1f} ms a batch: row INSERTs and the hourly and daily "
                 f"upserts, one transaction)")

    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE usage_usagerecord")
        cursor.execute("VACUUM ANALYZE usage_usagehour")
        cursor.execute("VACUUM ANALYZE usage_usageday")
        cursor.execute("SELECT pg_total_relation_size('usage_usagerecord'), pg_total_relation_size('usage_usagehour')"
                       " + pg_total_relation_size('usage_usageday')")
        record_bytes, hour_bytes = cursor.fetchone()
    records = UsageRecord.objects.count()
    hours = UsageHour.objects.count()
    per_call, per_hour_row = record_bytes / records, hour_bytes / hours
    retention = 7
    kept_raw = per_call * CALLS_PER_SECOND * 86400 * retention
    kept_hours = per_hour_row * ENDPOINTS * TOKENS * MODELS * 24 * 400
    lines += [
        f"Bytes per call row (table and indexes): {per_call:.0f}; per hourly row (its share of the daily rows "
        f"included): {per_hour_row:.0f}",
        f"On disk at {CALLS_PER_SECOND} calls/s: call rows kept {retention} days (USAGE_RETENTION_DAYS default) "
        f"{kept_raw / 1e9:.1f} GB; hourly totals kept 400 days at {ENDPOINTS * TOKENS * MODELS} keys an hour "
        f"{kept_hours / 1e9:.2f} GB; both bounded by the retention, whatever the traffic's duration",
    ]

    client = Client()
    client.force_login(admin)

    def timed(url: str, runs: int = 7) -> tuple[float, float]:
        client.get(url)  # warm
        samples = []
        for _ in range(runs):
            started = time.perf_counter()
            response = client.get(url)
            samples.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (url, response.status_code)
        return statistics.median(samples), max(samples)

    for label, url in [("Usage tab, 24 hours", "/settings/usage/?period=24h"),
                       ("Usage tab, 7 days", "/settings/usage/?period=7d"),
                       ("Usage tab, 30 days", "/settings/usage/?period=30d"),
                       ("Usage tab, 30 days, one endpoint", f"/settings/usage/?period=30d&endpoint={endpoints[3].pk}"),
                       ("Usage tab, 30 days, one token", "/settings/usage/?period=30d&token=5"),
                       ("API, 30 days by day, top tokens", f"/api/v1/usage/?group=day&by=token&since="
                        f"{(now - timedelta(days=30)).isoformat().replace('+00:00', 'Z')}"),
                       ("Endpoints list (Calls and Errors (24 h))", "/settings/endpoints/"),
                       ("Connections list (Calls and Errors (24 h))", "/settings/connections/")]:
        median, worst = timed(url)
        verdict = "" if not label.startswith("Usage tab") else (
            " (met: target < 300 ms)" if worst < TARGET_PAGE_MS else " (NOT met: target < 300 ms)")
        lines.append(f"{label}: median {median:.0f} ms, worst of 7 {worst:.0f} ms{verdict}")

    from django.conf import settings

    settings.USAGE_RETENTION_DAYS = 0  # everything written above is now past the retention
    started = time.perf_counter()
    deleted, _ = services.purge(now=datetime.now(UTC) + timedelta(minutes=1))
    seconds = time.perf_counter() - started
    lines.append(f"Purge: {deleted:,} call rows in {seconds:.1f} s = {deleted / seconds:,.0f} rows/s "
                 f"(batches of 10,000; an hour of traffic at {CALLS_PER_SECOND} calls/s is "
                 f"{CALLS_PER_SECOND * 3600:,} rows)")
    return lines


def fresh_database(server_url: str) -> str:
    """A new, empty database of its own on that PostgreSQL server (other benches use the one named)."""
    from urllib.parse import urlsplit, urlunsplit

    import psycopg

    name = f"bench_usage_{os.getpid()}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", help="a PostgreSQL server for the volume part (skipped without it); "
                                               "a database of its own is created there")
    options = parser.parse_args()
    if options.database_url:
        options.database_url = fresh_database(options.database_url)
    setup(options.database_url)
    for line in call_path():
        print(line)
    if options.database_url:
        for line in database(options.database_url):
            print(line)


if __name__ == "__main__":
    main()
