"""The Usage tab of the settings page, and `/metrics` for Prometheus."""

import ipaddress
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone
from django.views.generic import TemplateView
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from core.ui import SettingsPageMixin

from . import charts, metrics, summary

METRICS_PERMISSION = "usage.view_metrics"


def client_address(request) -> str:
    """The socket's peer; with BEHIND_PROXY, the right-most X-Forwarded-For entry (the proxy's own)."""
    if settings.BEHIND_PROXY:
        appended = request.META.get("HTTP_X_FORWARDED_FOR", "").rsplit(",", 1)[-1].strip()
        if appended:
            return appended
    return request.META.get("REMOTE_ADDR", "")


def address_allowed(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    for allowed in settings.METRICS_ALLOWED_ADDRESSES:
        try:
            if ip in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue
    return False


class MayReadMetrics(BasePermission):
    """A user (bearer token or session) holding usage.view_metrics, or a client at an allowed address."""

    def has_permission(self, request, view) -> bool:
        if address_allowed(client_address(request)):
            return True
        return bool(request.user and request.user.is_authenticated and request.user.has_perm(METRICS_PERMISSION))


@extend_schema(exclude=True)  # Prometheus' text format, not part of the REST API
class MetricsView(APIView):
    """`GET /metrics`: the gateway's calls, latencies, tokens and the connections' key ages, as Prometheus reads them."""

    permission_classes = [MayReadMetrics]

    def get(self, request):
        body, content_type = metrics.exposition()
        return HttpResponse(body, content_type=content_type, headers={"Cache-Control": "no-store"})


# --- The Usage tab ----------------------------------------------------------------------------------------

# label, span, the charts' period, the top tables' period. Where the tables add up days, the span starts at
# midnight (UTC), so that charts and tables cover the same calls.
PERIODS = {"24h": ("Last 24 hours", timedelta(hours=24), "hour", "hour"),
           "7d": ("Last 7 days", timedelta(days=7), "hour", "day"),
           "30d": ("Last 30 days", timedelta(days=30), "day", "day")}
CALLS = (charts.Series("ok", "calls", "chart-ok"), charts.Series("errors", "errors", "chart-error"))
LATENCY = (charts.Series("latency_p50_ms", "p50", "chart-p50"), charts.Series("latency_p95_ms", "p95", "chart-p95"))
TOKENS = (charts.Series("prompt_tokens", "tokens in", "chart-in"),
          charts.Series("completion_tokens", "tokens out", "chart-out"))
COST = (charts.Series("cost", "cost", "chart-cost"),)
TOP = (("endpoint", "Endpoints"), ("connection", "Connections"), ("token", "Tokens"), ("model", "Models"))


def chosen_id(request, name: str, choices: list[tuple[int, str]]) -> int | None:
    """The id picked in a filter, if it is one of the choices offered."""
    try:
        value = int(request.GET.get(name, ""))
    except ValueError:
        return None
    return value if any(value == pk for pk, _ in choices) else None


def csv_url(filters: summary.Filters, group: str, choices: dict) -> str:
    """The API's address for what the page shows, as CSV (the API names endpoints and connections by name)."""
    query = {"format": "csv", "group": group, "since": filters.since.isoformat(), "until": filters.until.isoformat()}
    for kind in ("endpoint", "connection"):
        picked = getattr(filters, f"{kind}_id")
        if picked is not None:
            query[kind] = dict(choices[kind])[picked]
    if filters.token_id is not None:
        query["token"] = str(filters.token_id)
    return f"/api/v1/usage/?{urlencode(query)}"


class UsagePageView(SettingsPageMixin, TemplateView):
    """Requests, errors, latency, tokens and cost over 24 hours, 7 or 30 days, as charts and top tables."""

    permission_required = "usage.view_usagerecord"
    template_name = "usage/usage.html"

    def get_context_data(self, **kwargs) -> dict:
        context = super().get_context_data(**kwargs)
        period = self.request.GET.get("period") if self.request.GET.get("period") in PERIODS else "24h"
        label, span, group, tops_group = PERIODS[period]
        user = self.request.user
        choices = {kind: summary.choices(kind, user) for kind in ("endpoint", "connection", "token")}
        picked = {kind: chosen_id(self.request, kind, options) for kind, options in choices.items()}
        until = timezone.now()
        since = until - span if tops_group == "hour" else summary.floor(until - span, "day")
        filters = summary.Filters(since=since, until=until, endpoint_id=picked["endpoint"],
                                  connection_id=picked["connection"], token_id=picked["token"],
                                  endpoint_ids=summary.visible_endpoint_ids(user))
        rows, totals = summary.series(filters, group)
        for row in rows:
            row["ok"] = row["calls"] - row["errors"]
        destinations = summary.destinations(filters, tops_group)
        context.update(
            periods=[(key, value[0]) for key, value in PERIODS.items()], period=period, period_label=label,
            since=filters.since,
            filters=[(kind, kind.capitalize(), options, picked[kind]) for kind, options in choices.items()],
            totals=totals, error_rate=(100 * totals["errors"] / totals["calls"]) if totals["calls"] else None,
            charts=[
                ("Requests and errors", charts.stacked_bars("Requests and errors", rows, CALLS, group)),
                ("Latency", charts.lines("Latency p50 and p95", rows, LATENCY, group, charts.milliseconds)),
                ("Tokens", charts.stacked_bars("Tokens in and out", rows, TOKENS, group)),
                ("Cost", charts.stacked_bars("Cost", rows, COST, group, charts.money)),
            ],
            tops=[(title, kind, summary.top(destinations, kind)) for kind, title in TOP],
            group=group, csv_url=csv_url(filters, group, choices),
        )
        return context
