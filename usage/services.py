"""Writing recorded calls (one row each, and the hourly totals added to), and purging old ones."""

import logging
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from .models import (
    KEY_FIELDS, LATENCY_BUCKETS_MS, LATENCY_FIELDS, SUM_FIELDS, Price, Totals, UsageDay, UsageHour, UsageHourOverall,
    UsageRecord,
)
from .calls import Call

logger = logging.getLogger("usage")

PRICES_TTL_SECONDS = 60.0


class Prices:
    """The prices per destination, read again at most once a minute by the process's writer."""

    def __init__(self):
        self.loaded_at = float("-inf")
        self.by_destination: dict[tuple[int, str], Price] = {}

    def get(self, connection_id: int | None, model: str) -> Price | None:
        if time.monotonic() - self.loaded_at > PRICES_TTL_SECONDS:
            self.by_destination = {(p.connection_id, p.model): p for p in Price.objects.all()}
            self.loaded_at = time.monotonic()
        return self.by_destination.get((connection_id, model)) if connection_id is not None else None

    def forget(self) -> None:
        self.loaded_at = float("-inf")


PRICES = Prices()


def latency_field(latency_ms: int) -> str:
    for bound, name in zip(LATENCY_BUCKETS_MS, LATENCY_FIELDS):
        if latency_ms <= bound:
            return name
    return LATENCY_FIELDS[-1]


def hour_of(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp - timestamp % 3600, tz=UTC)


def day_of(hour: datetime) -> datetime:
    return hour.replace(hour=0)


# UsageRecord's columns in the order write_calls() gives each row's values.
RECORD_COLUMNS = ("at", "endpoint_id", "connection_id", "token_id", "user_id", "provider", "model", "status", "error",
                  "attempts", "stream", "latency_ms", "ttfb_ms", "prompt_tokens", "completion_tokens", "cost_micros")


def write_calls(calls: list[Call]) -> None:
    """One row per call, and each call added to its hour's totals, in one transaction."""
    records, hours = [], {}
    adapt_time = connection.ops.adapt_datetimefield_value
    for call in calls:
        price = PRICES.get(call.connection_id, call.model)
        cost = price.cost_micros(call.prompt_tokens, call.completion_tokens) if price else None
        records.append((
            adapt_time(datetime.fromtimestamp(call.at, tz=UTC)), call.endpoint_id, call.connection_id, call.token_id,
            call.user_id, call.provider, call.model, call.status, call.error[:64], call.attempts, call.stream,
            call.latency_ms, call.ttfb_ms, call.prompt_tokens, call.completion_tokens, cost,
        ))
        key = (hour_of(call.at), call.endpoint_id or 0, call.connection_id or 0, call.token_id or 0, call.model)
        totals = hours.get(key)
        if totals is None:
            totals = hours[key] = dict.fromkeys(SUM_FIELDS, 0)
            totals["provider"], totals["last_at"] = call.provider, call.at
        totals["calls"] += 1
        totals["last_at"] = max(totals["last_at"], call.at)
        totals["errors"] += call.failed
        totals["prompt_tokens"] += call.prompt_tokens or 0
        totals["completion_tokens"] += call.completion_tokens or 0
        totals["cost_micros"] += cost or 0
        totals["latency_ms_sum"] += call.latency_ms
        totals[latency_field(call.latency_ms)] += 1
    days: dict[tuple, dict] = {}
    overall: dict[tuple, dict] = {}
    for (hour, *rest), totals in hours.items():
        every = overall.setdefault((hour, 0, 0, 0, ""), {**dict.fromkeys(SUM_FIELDS, 0), "last_at": 0.0})
        for name in SUM_FIELDS:
            every[name] += totals[name]
        every["provider"], every["last_at"] = "", max(every["last_at"], totals["last_at"])
        day = days.setdefault((day_of(hour), *rest), {**dict.fromkeys(SUM_FIELDS, 0), "last_at": 0.0})
        for name in SUM_FIELDS:
            day[name] += totals[name]
        day["provider"], day["last_at"] = totals["provider"], max(day["last_at"], totals["last_at"])
    with transaction.atomic():
        insert_records(records)
        add_to_totals(UsageHour, hours)
        add_to_totals(UsageHourOverall, overall)
        add_to_totals(UsageDay, days)


def insert_records(rows: list[tuple]) -> None:
    """The calls' rows, as bulk_create would write them but without a model instance per row: the writer's
    thread shares the interpreter with the event loop, so the CPU it spends is time the calls wait."""
    if not rows:
        return
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(UsageRecord._meta.db_table)} ({', '.join(quote(c) for c in RECORD_COLUMNS)}) "
           f"VALUES ({', '.join(['%s'] * len(RECORD_COLUMNS))})")
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


def add_to_totals(model: type[Totals], periods: dict[tuple, dict]) -> None:
    """Add each period's totals to its row, created if missing: one statement that any number of processes
    may run at once (INSERT … ON CONFLICT DO UPDATE adds, on PostgreSQL and SQLite alike)."""
    if not periods:
        return
    table = connection.ops.quote_name(model._meta.db_table)
    quote = connection.ops.quote_name
    key = (model.PERIOD, *KEY_FIELDS)
    columns = [*key, "provider", "last_at", *SUM_FIELDS]
    quoted = [quote(c) for c in columns]
    sums = ", ".join(f"{quote(name)} = {table}.{quote(name)} + excluded.{quote(name)}" for name in SUM_FIELDS)
    greatest = "GREATEST" if connection.vendor == "postgresql" else "MAX"  # SQLite's two-argument MAX
    sql = (
        f"INSERT INTO {table} ({', '.join(quoted)}) VALUES ({', '.join(['%s'] * len(columns))}) "
        f"ON CONFLICT ({', '.join(quoted[:len(key)])}) DO UPDATE SET {sums}, "
        f"{quote('provider')} = excluded.{quote('provider')}, "
        f"{quote('last_at')} = {greatest}({table}.{quote('last_at')}, excluded.{quote('last_at')})"
    )
    adapt = connection.ops.adapt_datetimefield_value
    rows = []
    for (start, *ids), totals in sorted(periods.items(), key=lambda item: item[0]):  # one lock order everywhere
        last_at = datetime.fromtimestamp(totals["last_at"], tz=UTC)
        rows.append([adapt(start), *ids, totals["provider"], adapt(last_at), *(totals[name] for name in SUM_FIELDS)])
    with connection.cursor() as cursor:
        cursor.executemany(sql, rows)


PURGE_LOCK = 0x75736167  # PostgreSQL advisory lock key: one purger at a time across processes


@contextmanager
def only_purger() -> Iterator[bool]:
    """Whether this process may purge now (on PostgreSQL, no other is at it); others skip this round."""
    if connection.vendor != "postgresql":
        yield True
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [PURGE_LOCK])
        mine = cursor.fetchone()[0]
    try:
        yield mine
    finally:
        if mine:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [PURGE_LOCK])


def purge(*, now: datetime | None = None, batch_size: int = 10_000) -> tuple[int, int]:
    """Delete rows older than USAGE_RETENTION_DAYS and hourly totals older than USAGE_HOURLY_RETENTION_DAYS,
    in batches (short transactions, no long lock); returns how many of each. Another process purging at the
    same moment makes this one skip (nothing deleted)."""
    with only_purger() as mine:
        return purge_now(now=now, batch_size=batch_size) if mine else (0, 0)


def purge_now(*, now: datetime | None, batch_size: int) -> tuple[int, int]:
    now = now or timezone.now()
    records = delete_in_batches(UsageRecord.objects.filter(at__lt=now - timedelta(days=settings.USAGE_RETENTION_DAYS)),
                                batch_size)
    cutoff = now - timedelta(days=settings.USAGE_HOURLY_RETENTION_DAYS)
    hours = delete_in_batches(UsageHour.objects.filter(hour__lt=cutoff), batch_size)
    delete_in_batches(UsageHourOverall.objects.filter(hour__lt=cutoff), batch_size)
    delete_in_batches(UsageDay.objects.filter(day__lt=cutoff), batch_size)
    return records, hours


def delete_in_batches(queryset, batch_size: int) -> int:
    deleted = 0
    while True:
        ids = list(queryset.order_by().values_list("id", flat=True)[:batch_size])
        if not ids:
            return deleted
        deleted += queryset.model.objects.filter(id__in=ids).delete()[0]


def percentile(buckets: Iterable[int], fraction: float) -> float | None:
    """The latency (ms) below which `fraction` of the calls fell, estimated within its bucket."""
    counts = list(buckets)
    total = sum(counts)
    if not total:
        return None
    rank, seen, lower = fraction * total, 0, 0
    bounds = (*LATENCY_BUCKETS_MS, LATENCY_BUCKETS_MS[-1] * 2)
    for count, upper in zip(counts, bounds):
        if count and seen + count >= rank:
            return lower + (upper - lower) * (rank - seen) / count
        seen += count
        lower = upper
    return float(bounds[-1])
