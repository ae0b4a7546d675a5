"""The Usage tab of the settings page, and `/metrics` for Prometheus."""

import ipaddress

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import BasePermission
from rest_framework.views import APIView

from . import metrics

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
