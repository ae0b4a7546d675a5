from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.utils import timezone
from rest_framework import serializers

from ..summary import BREAKDOWNS, GROUPS, Filters, visible, visible_endpoint_ids

# The longest span one answer covers: hours for a month, days for the hourly totals' retention.
MAX_SPAN = {"hour": timedelta(days=31), "day": timedelta(days=400)}


class UsageQuerySerializer(serializers.Serializer):
    """What `/api/v1/usage/` is asked: a span, whose calls, by hour or day, optionally a breakdown."""

    since = serializers.DateTimeField(required=False, help_text="Start (ISO 8601; to the hour). Default: 24 hours ago.")
    until = serializers.DateTimeField(required=False, help_text="End, excluded (ISO 8601). Default: now.")
    endpoint = serializers.CharField(required=False, max_length=64, help_text="Only calls of this endpoint (its name).")
    connection = serializers.CharField(required=False, max_length=64, help_text="Only calls through this connection.")
    token = serializers.IntegerField(required=False, min_value=1, max_value=2**31 - 1,
                                     help_text="Only calls made with this API token (its id).")
    group = serializers.ChoiceField(GROUPS, default="hour", help_text="One row per hour or per day.")
    by = serializers.ChoiceField(BREAKDOWNS, required=False,
                                 help_text="Add `top`: the endpoints, connections, tokens or models with the most calls.")
    limit = serializers.IntegerField(required=False, default=10, min_value=1, max_value=1000,
                                     help_text="How many rows `top` has.")

    def validate(self, attrs: dict) -> dict:
        until = attrs.get("until") or timezone.now()
        since = attrs.get("since") or until - timedelta(hours=24)
        if since >= until:
            raise serializers.ValidationError({"since": ["'since' must be before 'until'."]})
        if until - since > MAX_SPAN[attrs["group"]]:
            raise serializers.ValidationError(
                {"since": [f"Ask for at most {MAX_SPAN[attrs['group']].days} days by {attrs['group']}."]})
        ids = {}
        user = self.context["request"].user
        for kind in ("endpoint", "connection"):
            if attrs.get(kind):
                found = visible(kind, user).filter(name=attrs[kind]).values_list("pk", flat=True).first()
                if found is None:
                    raise serializers.ValidationError({kind: [f"There is no {kind} named '{attrs[kind]}'."]})
                ids[f"{kind}_id"] = found
        attrs["filters"] = Filters(since=since, until=until, token_id=attrs.get("token"),
                                   endpoint_ids=visible_endpoint_ids(user), **ids)
        return attrs


class UsageRowSerializer(serializers.Serializer):
    calls = serializers.IntegerField()
    errors = serializers.IntegerField(help_text="Calls answered with an error (status 400 or above, or a stream "
                                                "that ended with an error event).")
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    total_tokens = serializers.IntegerField()
    cost = serializers.DecimalField(max_digits=20, decimal_places=6, coerce_to_string=True,
                                    help_text="From the prices set per destination; 0 where none is set.")
    latency_avg_ms = serializers.IntegerField(allow_null=True)
    latency_p50_ms = serializers.IntegerField(allow_null=True, help_text="Estimated from latency buckets.")
    latency_p95_ms = serializers.IntegerField(allow_null=True, help_text="Estimated from latency buckets.")


class UsagePeriodSerializer(UsageRowSerializer):
    start = serializers.DateTimeField(help_text="The hour's or day's start (UTC).")


class UsageTopSerializer(UsageRowSerializer):
    key = serializers.CharField(help_text="The id (endpoint, connection, token) or the model.")
    name = serializers.CharField(help_text="Its current name; `#id (deleted)` once deleted.")


class UsageReportSerializer(serializers.Serializer):
    since = serializers.DateTimeField()
    until = serializers.DateTimeField()
    group = serializers.ChoiceField(GROUPS)
    totals = UsageRowSerializer()
    results = UsagePeriodSerializer(many=True)
    top = UsageTopSerializer(many=True, required=False)
