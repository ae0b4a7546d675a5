"""Usage added up from the hourly and daily totals, for the Usage tab, the API and the lists: a few queries
whatever the traffic (the totals grow with periods × destinations × tokens, never with calls)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import cache

from django.apps import apps
from django.conf import settings
from django.db.models import Max, QuerySet, Sum
from django.utils import timezone

from core.rows import ForIds

from .models import KEY_FIELDS, LATENCY_FIELDS, SUM_FIELDS, Totals, UsageDay, UsageHour, UsageHourOverall
from .services import percentile

GROUPS = ("hour", "day")
BREAKDOWNS = ("endpoint", "connection", "token", "model")
LAST_USED_DAYS = 31
TABLES: dict[str, type[Totals]] = {"hour": UsageHour, "day": UsageDay}
STEP = {"hour": timedelta(hours=1), "day": timedelta(days=1)}


@dataclass(frozen=True)
class Filters:
    """Which periods and whose calls: [since, until) to the hour or day, optionally one endpoint, connection
    or token."""

    since: datetime
    until: datetime
    endpoint_id: int | None = None
    connection_id: int | None = None
    token_id: int | None = None
    # The ids of the endpoints whose calls count (a subquery: those of a user's teams); None: every call.
    endpoint_ids: object = None

    @property
    def filtered(self) -> bool:
        return any(getattr(self, f) is not None for f in ("endpoint_id", "connection_id", "token_id", "endpoint_ids"))

    def rows(self, group: str, *, overall: bool = False) -> QuerySet[Totals]:
        """The totals of the hours or days (UsageHour or UsageDay) in the span, filtered; `overall`: from one
        row per hour over every destination (UsageHourOverall) when nothing is filtered."""
        model = UsageHourOverall if overall and group == "hour" and not self.filtered else TABLES[group]
        queryset = model.objects.filter(**{f"{model.PERIOD}__gte": floor(self.since, group),
                                           f"{model.PERIOD}__lt": self.until})
        for field in ("endpoint_id", "connection_id", "token_id"):
            if getattr(self, field) is not None:
                queryset = queryset.filter(**{field: getattr(self, field)})
        if self.endpoint_ids is not None:
            queryset = queryset.filter(endpoint_id__in=self.endpoint_ids)
        return queryset


def visible(kind: str, user):
    """The endpoints or connections `user` sees (their teams'; all for a superuser), as a queryset."""
    return apps.get_model(settings.USAGE_SUBJECTS[kind]).objects.visible_to(user)


def visible_endpoint_ids(user):
    """Whose calls a user sees: those to the endpoints of their teams (None: all, for a superuser). Calls that
    named no endpoint (an unknown one) are a superuser's to see."""
    if getattr(user, "is_superuser", False):
        return None
    return visible("endpoint", user).values("id")


def floor(moment: datetime, group: str) -> datetime:
    moment = moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return moment.replace(hour=0) if group == "day" else moment


def sums() -> dict:
    return {name: Sum(name) for name in SUM_FIELDS}


def added(rows) -> dict:
    """Rows of sums added up (in Python: they are few, one per period or per destination)."""
    total = dict.fromkeys(SUM_FIELDS, 0)
    for row in rows:
        for name in SUM_FIELDS:
            total[name] += row.get(name) or 0
    return total


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


def series(filters: Filters, group: str) -> tuple[list[dict], dict]:
    """One row per hour or day from `since` to `until`, empty ones included (a chart's x axis), and their
    totals: one query."""
    period = TABLES[group].PERIOD
    rows = filters.rows(group, overall=True).values(period).annotate(**sums()).order_by(period)
    found = {row[period]: row for row in rows}
    result, moment, step = [], floor(filters.since, group), STEP[group]
    while moment < filters.until:
        result.append({"start": moment, **described(found.get(moment, {}))})
        moment += step
    return result, described(added(found.values()))


def destinations(filters: Filters, group: str) -> list[dict]:
    """The sums of each endpoint × connection × token × model in the span: one query, a row per destination
    and token (not per call or period), from which every top table is added up."""
    return list(filters.rows(group).values(*KEY_FIELDS).annotate(**sums()).order_by())


def top(rows: list[dict], by: str, limit: int = 10) -> list[dict]:
    """The `limit` endpoints, connections, tokens or models with the most calls, with their current names:
    added up from `destinations()`, plus one query for the names."""
    key = "model" if by == "model" else f"{by}_id"
    grouped: dict = {}
    for row in rows:
        grouped.setdefault(row[key], []).append(row)
    ranked = sorted(((value, added(members)) for value, members in grouped.items()),
                    key=lambda item: (-item[1]["calls"], str(item[0])))[:limit]
    labels = {value: value or "—" for value, _ in ranked} if by == "model" else names(by, [v for v, _ in ranked])
    return [{"key": value, "name": labels.get(value, ""), **described(sums_)} for value, sums_ in ranked]


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


def choices(kind: str, user=None) -> list[tuple[int, str]]:
    """Every endpoint, connection or token by its current name, for filters: one query. With `user`, only the
    endpoints and connections of their teams."""
    model = apps.get_model(settings.USAGE_SUBJECTS[kind])
    if kind == "token":
        rows = model.objects.order_by("user__username", "prefix").values_list("pk", "prefix", "user__username")
        return [(pk, f"{prefix}… ({username})") for pk, prefix, username in rows]
    rows = model.objects.all() if user is None else visible(kind, user)
    return list(rows.order_by("name").values_list("pk", "name"))


def last_day_by(kind: str, ids, *, last_used: bool = True) -> dict[int, dict]:
    """Calls and errors of the current hour and the 23 before it (hourly totals), and the latest call of the
    last LAST_USED_DAYS (daily totals), for each of these endpoints or connections: two queries."""
    field, wanted = f"{kind}_id", [i for i in ids if i]
    hourly, daily = last_day_statements(kind)
    alias = UsageHour.objects.db
    since = floor(timezone.now(), "hour") - timedelta(hours=23)
    found: dict[int, dict] = {}
    names, rows = hourly.fetchall(alias, wanted, since=since)
    for row in rows:
        row = dict(zip(names, row))
        found[row[field]] = row
    if not last_used:
        return found
    last_used_since = floor(timezone.now(), "day") - timedelta(days=LAST_USED_DAYS)
    names, rows = daily.fetchall(alias, wanted, since=last_used_since)
    for row in rows:
        row = dict(zip(names, row))
        found.setdefault(row[field], {})["last_at"] = row["last_at"]
    return found


SAMPLE_TIME = datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC)


@cache
def last_day_statements(kind: str) -> tuple[ForIds, ForIds]:
    """`last_day_by()`'s two queries for one kind, compiled once per number of ids (list pages read them for every
    page of rows: the query builder cost more than running them)."""
    field = f"{kind}_id"
    hourly = ForIds(lambda ids, since: UsageHour.objects.filter(**{f"{field}__in": ids}, hour__gte=since)
                    .values(field).annotate(calls=Sum("calls"), errors=Sum("errors")), since=SAMPLE_TIME)
    daily = ForIds(lambda ids, since: UsageDay.objects.filter(**{f"{field}__in": ids}, day__gte=since)
                   .values(field).annotate(last_at=Max("last_at")), since=SAMPLE_TIME)
    return hourly, daily
