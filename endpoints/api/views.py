import django_filters
from django.db.models import Prefetch
from rest_framework import viewsets

from connections.models import Environment
from core.api import NAME_IN_URL, ModelPermissions
from core.api_lists import Computed, ValuesList, ValuesListMixin
from providers import catalogue

from ..models import Destination, Endpoint
from ..services import endpoint_delete
from .serializers import EndpointSerializer, fallback_on_list


class EndpointFilter(django_filters.FilterSet):
    # Endpoints with any destination (primary or fallback) on that provider, connection or environment.
    provider = django_filters.ChoiceFilter(field_name="destinations__connection__provider",
                                           choices=catalogue.provider_choices, distinct=True)
    connection = django_filters.CharFilter(field_name="destinations__connection__name", distinct=True)
    environment = django_filters.ChoiceFilter(field_name="destinations__connection__environment",
                                              choices=Environment.choices, distinct=True)
    team = django_filters.CharFilter(field_name="team__name", label="The team's name")

    class Meta:
        model = Endpoint
        fields = ["provider", "connection", "task", "enabled", "team"]


def first_destination(name: str):
    """A field of the row's first destination as the list represents it (None without destinations)."""
    return lambda row: row["destinations"][0][name] if row["destinations"] else None


class EndpointViewSet(ValuesListMixin, viewsets.ModelViewSet):
    """Gateway endpoints, looked up by name, with their destinations (connections by name)."""

    # One query for the endpoints and one for their destinations; the connections' secrets column is
    # deferred: listing endpoints never decrypts credentials.
    queryset = Endpoint.objects.select_related("team").prefetch_related(Prefetch(
        "destinations",
        queryset=Destination.objects.select_related("connection").defer("connection__secrets").order_by("position"),
    ))
    serializer_class = EndpointSerializer
    # The list reads values, not instances: the serializer's output, checked against it by the tests.
    # `connection`, `provider`, `environment` and `model` name the first destination, as the serializer says.
    values_list = ValuesList(EndpointSerializer, computed={
        **{name: Computed((), first_destination(name), plain=True)
           for name in ("connection", "provider", "environment", "model")},
        "fallback_on": Computed(("fallback_on",), lambda row: fallback_on_list(row["fallback_on"]), plain=True),
    })
    permission_classes = [ModelPermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_IN_URL
    filterset_class = EndpointFilter
    ordering_fields = ["name", "updated_at"]
    ordering = ["name"]

    def get_queryset(self):
        """Only the endpoints of the user's teams: another team's is answered as one that does not exist."""
        return super().get_queryset().visible_to(self.request.user)

    def list_queryset(self, user):
        """What `get_queryset()` gives a list request by `user`."""
        return self.queryset.all().visible_to(user)

    def perform_destroy(self, endpoint: Endpoint) -> None:
        endpoint_delete(endpoint=endpoint, actor=self.request.user)
