from functools import lru_cache

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers

from connections.models import Connection
from core.api import ModelCleanSerializer, NameRelatedField, django_errors_to_drf
from teams.api import NAME_THE_TEAM, TeamField, only_team_of, user_of

from ..models import TOTAL_WEIGHT, Destination, Endpoint, FallbackOn
from ..services import endpoint_save


class ConnectionField(NameRelatedField):
    """A connection by name, among those the request's user sees: another team's is one that does not exist."""

    def get_queryset(self):
        return Connection.objects.defer("secrets").visible_to(user_of(self))


def connection_field(**kwargs) -> NameRelatedField:
    kwargs.setdefault("help_text", "The connection's name.")
    return ConnectionField(queryset=Connection.objects.defer("secrets"), **kwargs)


FALLBACK_ORDER = tuple(FallbackOn.values)  # read once: the enum builds the list again on every access


def fallback_on_list(values) -> list[str]:
    """The failures an endpoint falls back on, each once, in FallbackOn's order (as the API shows them)."""
    try:
        return list(fallback_on_of(tuple(values or ())))
    except TypeError:  # an unhashable item: worked out as it comes
        chosen = set(values or ())
        return [value for value in FALLBACK_ORDER if value in chosen]


@lru_cache(maxsize=256)
def fallback_on_of(values: tuple) -> tuple[str, ...]:
    """A list shows one of a few choices of failures again and again: each is worked out once."""
    chosen = set(values)
    return tuple(value for value in FALLBACK_ORDER if value in chosen)


class DestinationSerializer(serializers.ModelSerializer):
    """One destination: a connection (by name) and the provider's model id, as a weighted primary or a fallback.

    Fallbacks are tried in the order listed; a primary's `weight` (1–100) may be left out when it is the only one.
    """

    connection = connection_field()
    provider = serializers.CharField(source="connection.provider", read_only=True)
    weight = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=TOTAL_WEIGHT,
        help_text="A primary's share of the calls; the primaries' weights add up to 100. Null for a fallback.",
    )
    environment = serializers.CharField(source="connection.environment", read_only=True,
                                        help_text="The environment of the destination's connection.")
    cooling_until = serializers.DateTimeField(
        read_only=True, allow_null=True,
        help_text="Until when calls try this destination after the others, since it answered 429 or 5xx, timed out "
                  "or was unreachable; null when it is not cooling down.",
    )

    class Meta:
        model = Destination
        fields = ["connection", "provider", "environment", "model", "role", "weight", "cooling_until"]

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - {name for name, field in self.fields.items() if not field.read_only})
            if unknown:
                raise serializers.ValidationError({name: [f"Unknown field '{name}'."] for name in unknown})
        return super().to_internal_value(data)


class EndpointSerializer(ModelCleanSerializer):
    """An endpoint and its destinations (primaries split by weight, then fallbacks in order).

    `connection`, `model` and `provider` name the first primary destination; written, `connection` and `model`
    make the endpoint's one destination (primary, weight 100), as before endpoints had several.
    """

    destinations = DestinationSerializer(many=True, required=False, max_length=50)
    connection = connection_field(
        required=False,
        help_text="The first primary destination's connection. Written (with `model`, or alone on an endpoint "
                  "with one destination): the endpoint's one destination, instead of `destinations`.",
    )
    model = serializers.CharField(
        required=False, max_length=200,
        help_text="The first primary destination's model id; written: see `connection`.",
    )
    provider = serializers.CharField(read_only=True, help_text="The first primary destination's provider.")
    environment = serializers.CharField(
        read_only=True, help_text="The environment of the first primary destination's connection.",
    )
    team = TeamField(required=False, help_text="The team's name; its connections are the only ones the endpoint "
                                               "uses. Left out on create: the team of the destinations' connections.")
    fallback_on = serializers.MultipleChoiceField(
        choices=FallbackOn.choices, required=False,
        help_text="Failures after which a call goes on to the next destination: " + ", ".join(FallbackOn.values) + ".",
    )

    class Meta:
        model = Endpoint
        fields = ["name", "team", "connection", "provider", "environment", "model", "task", "enabled", "destinations",
                  "fallback_on", "deadline_seconds", "allow_mixed_environments", "requests_per_minute",
                  "token_budget", "budget_period", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def to_representation(self, instance):
        destinations = list(instance.destinations.all())
        first = destinations[0] if destinations else None
        data = {
            "name": instance.name,
            "team": instance.team.name,
            "connection": first.connection.name if first else None,
            "provider": first.connection.provider if first else None,
            "environment": first.connection.environment if first else None,
            "model": first.model if first else None,
            "task": instance.task,
            "enabled": instance.enabled,
            "destinations": DestinationSerializer(destinations, many=True).data,
            "fallback_on": fallback_on_list(instance.fallback_on),
            "deadline_seconds": instance.deadline_seconds,
            "allow_mixed_environments": instance.allow_mixed_environments,
            "requests_per_minute": instance.requests_per_minute,
            "token_budget": instance.token_budget,
            "budget_period": instance.budget_period,
        }
        timestamps = {name: self.fields[name] for name in ("created_at", "updated_at")}
        data.update({name: field.to_representation(getattr(instance, name)) for name, field in timestamps.items()})
        return data

    def validate(self, attrs: dict) -> dict:
        given = self.destinations_given(attrs)
        attrs = {name: value for name, value in attrs.items() if name not in ("destinations", "connection", "model")}
        if "fallback_on" in attrs:
            attrs["fallback_on"] = [value for value in FallbackOn.values if value in attrs["fallback_on"]]
        if self.instance is None and "team" not in attrs:
            first = given[0].connection if given else None
            attrs["team"] = first.team if first is not None else only_team_of(self.context["request"].user)
            if attrs["team"] is None:
                raise serializers.ValidationError({"team": [NAME_THE_TEAM]})
        attrs = super().validate(attrs)
        endpoint = self.cleaned_instance
        destinations = given if given is not None else (
            list(endpoint.destinations.select_related("connection")) if endpoint.pk else []
        )
        errors: dict[str, dict] = {}  # by position in the list, as DRF reports a nested list's errors
        for index, destination in enumerate(destinations):
            destination.endpoint = endpoint
            try:
                destination.full_clean(exclude=["endpoint", "position"], validate_constraints=False)
            except DjangoValidationError as error:
                errors[str(index)] = django_errors_to_drf(error)
        if errors:
            raise serializers.ValidationError({"destinations": errors})
        try:
            endpoint.check_destinations(destinations)
        except DjangoValidationError as error:
            raise serializers.ValidationError(django_errors_to_drf(error)) from None
        self.cleaned_destinations = given
        return attrs

    def destinations_given(self, attrs: dict) -> list[Destination] | None:
        """The destinations the request names (the list, or the connection/model shorthand), or None."""
        shorthand = {name: attrs[name] for name in ("connection", "model") if name in attrs}
        if "destinations" in attrs and shorthand:
            raise serializers.ValidationError(
                {name: ["Give either 'destinations' or 'connection' and 'model', not both."] for name in shorthand}
            )
        if shorthand:
            missing = [name for name in ("connection", "model") if name not in shorthand]
            current = list(self.instance.destinations.select_related("connection")) if self.instance else []
            if missing and len(current) != 1:
                raise serializers.ValidationError({name: [
                    "Give both 'connection' and 'model' (they replace every destination), or 'destinations'."
                ] for name in missing})
            for name in missing:  # the endpoint's one destination keeps what the request leaves out
                shorthand[name] = getattr(current[0], name)
            return [Destination(connection=shorthand["connection"], model=shorthand["model"], role="primary", weight=100)]
        if "destinations" not in attrs:
            if self.instance is None:
                raise serializers.ValidationError({"destinations": ["Give the endpoint's destinations."]})
            return None
        items = attrs["destinations"]
        primaries = [item for item in items if item.get("role", "primary") == "primary"]
        destinations = []
        for item in items:
            weight = item.get("weight")
            if weight is None and item.get("role", "primary") == "primary" and len(primaries) == 1:
                weight = TOTAL_WEIGHT
            destinations.append(Destination(
                connection=item["connection"], model=item["model"], role=item.get("role", "primary"), weight=weight,
            ))
        return destinations

    def save_instance(self, endpoint: Endpoint) -> Endpoint:
        return endpoint_save(endpoint=endpoint, destinations=self.cleaned_destinations,
                             actor=self.context["request"].user)
