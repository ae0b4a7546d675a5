import django_filters
from django.db.models import Prefetch
from rest_framework import viewsets

from connections.models import Environment
from core.api import NAME_IN_URL, ModelPermissions
from providers import catalogue

from ..models import Destination, Endpoint
from ..services import endpoint_delete
from .serializers import EndpointSerializer


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


class EndpointViewSet(viewsets.ModelViewSet):
    """Gateway endpoints, looked up by name, with their destinations (connections by name)."""

    # One query for the endpoints and one for their destinations; the connections' secrets column is
    # deferred: listing endpoints never decrypts credentials.
    queryset = Endpoint.objects.select_related("team").prefetch_related(Prefetch(
        "destinations",
        queryset=Destination.objects.select_related("connection").defer("connection__secrets").order_by("position"),
    ))
    serializer_class = EndpointSerializer
    permission_classes = [ModelPermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_IN_URL
    filterset_class = EndpointFilter
    ordering_fields = ["name", "updated_at"]
    ordering = ["name"]

    def get_queryset(self):
        """Only the endpoints of the user's teams: another team's is answered as one that does not exist."""
        return super().get_queryset().visible_to(self.request.user)

    def perform_destroy(self, endpoint: Endpoint) -> None:
        endpoint_delete(endpoint=endpoint, actor=self.request.user)
