"""Usage added up from the hourly totals, for the Usage tab, the API and the lists: a few queries whatever the
traffic (the totals grow with hours × destinations × tokens, never with calls)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.apps import apps
from django.conf import settings
from django.db.models import Max, Q, QuerySet, Sum
from django.db.models.functions import TruncDay
from django.utils import timezone

from .models import LATENCY_FIELDS, SUM_FIELDS, UsageHour
from .services import percentile

GROUPS = ("hour", "day")
BREAKDOWNS = ("endpoint", "connection", "token", "model")
LAST_USED_DAYS = 31
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class Filters:
    """Which hours and whose calls: [since, until) to the hour, optionally one endpoint, connection or token."""

    since: datetime
    until: datetime
    endpoint_id: int | None = None
    connection_id: int | None = None
    token_id: int | None = None

    def hours(self) -> QuerySet[UsageHour]:
        queryset = UsageHour.objects.filter(hour__gte=floor(self.since, "hour"), hour__lt=self.until)
        for field in ("endpoint_id", "connection_id", "token_id"):
            if getattr(self, field) is not None:
                queryset = queryset.filter(**{field: getattr(self, field)})
        return queryset


def floor(moment: datetime, group: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if group == "day" else moment


def sums() -> dict:
    return {name: Sum(name) for name in SUM_FIELDS}


def described(row: dict) -> dict:
    """A row of sums as people read it: tokens in, out and total, cost, error rate, latency percentiles."""
    calls = row.get("calls") or 0
    buckets = [row.get(name) or 0 for name in LATENCY_FIELDS]
    cost = row.get("cost_micros") or 0
    p50, p95 = percentile(buckets, 0.5), percentile(buckets, 0.95)
    return {
        "calls": calls,
        "errors": row.get("errors") or 0,
        "prompt_tokens": row.get("prompt_tokens") or 0,
        "completion_tokens": row.get("completion_tokens") or 0,
        "total_tokens": (row.get("prompt_tokens") or 0) + (row.get("completion_tokens") or 0),
        "cost": (Decimal(cost) / 1_000_000).quantize(Decimal("0.000001")),
        "latency_avg_ms": round((row.get("latency_ms_sum") or 0) / calls) if calls else None,
        "latency_p50_ms": round(p50) if p50 is not None else None,
        "latency_p95_ms": round(p95) if p95 is not None else None,
    }


def series(filters: Filters, group: str) -> list[dict]:
    """One row per hour or day from `since` to `until`, empty ones included (a chart's x axis): one query."""
    queryset = filters.hours()
    if group == "day":
        queryset = queryset.annotate(start=TruncDay("hour", tzinfo=UTC))
        rows = queryset.values("start").annotate(**sums()).order_by("start")
    else:
        rows = queryset.values("hour").annotate(**sums()).order_by("hour")
    found = {(row.get("start") or row.get("hour")): row for row in rows}
    result, moment, step = [], floor(filters.since, group), STEP[group]
    while moment < filters.until:
        result.append({"start": moment, **described(found.get(moment, {}))})
        moment += step
    return result


def totals(filters: Filters) -> dict:
    return described(filters.hours().aggregate(**sums()))


def top(filters: Filters, by: str, limit: int = 10) -> list[dict]:
    """The `limit` endpoints, connections, tokens or models with the most calls, with their current names."""
    key = "model" if by == "model" else f"{by}_id"
    rows = list(filters.hours().values(key).annotate(**sums()).order_by("-calls", key)[:limit])
    labels = {row[key]: row[key] or "—" for row in rows} if by == "model" else names(by, [row[key] for row in rows])
    return [{"key": row[key], "name": labels.get(row[key], ""), **described(row)} for row in rows]


def names(kind: str, ids) -> dict[int, str]:
    """What the ids are called now (one query); deleted ones as `#id (deleted)`, none as `—`."""
    wanted = {i for i in ids if i}
    model = apps.get_model(settings.USAGE_SUBJECTS[kind])
    if kind == "token":
        found = {pk: f"{prefix}… ({username})" for pk, prefix, username in
                 model.objects.filter(pk__in=wanted).values_list("pk", "prefix", "user__username")} if wanted else {}
    else:
        found = dict(model.objects.filter(pk__in=wanted).values_list("pk", "name")) if wanted else {}
    return {i: found.get(i, f"#{i} (deleted)") if i else "—" for i in ids}


def choices(kind: str) -> list[tuple[int, str]]:
    """Every endpoint, connection or token by its current name, for filters: one query."""
    model = apps.get_model(settings.USAGE_SUBJECTS[kind])
    if kind == "token":
        rows = model.objects.order_by("user__username", "prefix").values_list("pk", "prefix", "user__username")
        return [(pk, f"{prefix}… ({username})") for pk, prefix, username in rows]
    return list(model.objects.order_by("name").values_list("pk", "name"))


def last_day_by(kind: str, ids) -> dict[int, dict]:
    """Calls and errors of the current hour and the 23 before it, and the latest call of the last
    LAST_USED_DAYS, for each of these endpoints or connections: one query on the hourly totals."""
    field = f"{kind}_id"
    since = floor(timezone.now(), "hour") - timedelta(hours=23)
    rows = (UsageHour.objects.filter(**{f"{field}__in": [i for i in ids if i]},
                                     hour__gte=since - timedelta(days=LAST_USED_DAYS))
            .values(field).annotate(calls=Sum("calls", filter=Q(hour__gte=since)),
                                    errors=Sum("errors", filter=Q(hour__gte=since)), last_at=Max("last_at")))
    return {row[field]: row for row in rows}


def with_last_day_of_usage(kind: str, rows) -> list:
    """The rows of a list page (endpoints or connections), each with `calls_24h`, `errors_24h` and
    `usage_last_at`: one query for the whole page."""
    rows = list(rows)
    usage = last_day_by(kind, [row.pk for row in rows])
    for row in rows:
        found = usage.get(row.pk, {})
        row.calls_24h, row.errors_24h = found.get("calls") or 0, found.get("errors") or 0
        row.usage_last_at = found.get("last_at")
    return rows
