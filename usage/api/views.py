"""`/api/v1/usage/`: the gateway's calls added up by hour or day, filtered, as JSON or CSV."""

import csv
import io

from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView

from core.api import has_permission

from .. import summary
from .serializers import UsageQuerySerializer, UsageReportSerializer

PERMISSION = "usage.view_usagerecord"
COLUMNS = ["calls", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost",
           "latency_avg_ms", "latency_p50_ms", "latency_p95_ms"]
# A cell a spreadsheet would run as a formula starts with one of these: it is written with a ' in front.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


class CSVRenderer(BaseRenderer):
    """The report's rows (or `top`'s, when asked for) as CSV, one header line first."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        if not isinstance(data, dict) or "results" not in data:  # an error answer
            writer.writerow(["error"])
            writer.writerow([safe_cell(str(data))])
            return out.getvalue().encode()
        if data.get("top") is not None:
            header, rows = ["key", "name", *COLUMNS], data["top"]
        else:
            header, rows = ["start", *COLUMNS], data["results"]
        writer.writerow(header)
        for row in rows:
            writer.writerow([safe_cell(row.get(column)) for column in header])
        return out.getvalue().encode()


def safe_cell(value) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(FORMULA_START) else text


class UsageView(APIView):
    """The gateway's calls from the hourly totals: requests, errors, tokens, cost and latency per hour or day
    (`?group=`), for a span (`?since=`, `?until=`), an endpoint, a connection or a token; `?by=` adds the top
    endpoints, connections, tokens or models; `?format=csv` answers CSV."""

    permission_classes = [has_permission(PERMISSION)]
    renderer_classes = [JSONRenderer, CSVRenderer]

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:  # DRF's answer to an unknown `?format=`: the request's fault, said as such
            raise ValidationError({"format": ["Ask for json or csv."]}) from None

    def handle_exception(self, exc):
        """Errors are JSON, whatever format was asked for."""
        response = super().handle_exception(exc)
        self.request.accepted_renderer, self.request.accepted_media_type = JSONRenderer(), "application/json"
        return response

    @extend_schema(
        parameters=[UsageQuerySerializer],
        responses={
            (200, "application/json"): UsageReportSerializer,
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="The rows as CSV (`?format=csv`)."),
        },
    )
    def get(self, request):
        query = UsageQuerySerializer(data=request.query_params, context={"request": request})
        query.is_valid(raise_exception=True)
        filters, group = query.validated_data["filters"], query.validated_data["group"]
        rows, totals = summary.series(filters, group)
        report = {"since": summary.floor(filters.since, group), "until": filters.until, "group": group,
                  "totals": totals, "results": rows}
        if query.validated_data.get("by"):
            report["top"] = summary.top(summary.destinations(filters, group), query.validated_data["by"],
                                        query.validated_data["limit"])
        data = UsageReportSerializer(report).data
        if "top" not in report:
            data.pop("top", None)
        return Response(data)
