import django_filters
from rest_framework import viewsets

from connections.models import Environment
from core.api import NAME_IN_URL, ModelPermissions
from core.api_lists import ValuesList, ValuesListMixin
from providers import catalogue

from ..models import Endpoint
from ..services import endpoint_delete
from .serializers import EndpointSerializer


class EndpointFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(field_name="connection__provider", choices=catalogue.provider_choices)
    connection = django_filters.CharFilter(field_name="connection__name")
    environment = django_filters.ChoiceFilter(field_name="connection__environment", choices=Environment.choices)

    class Meta:
        model = Endpoint
        fields = ["provider", "connection", "task", "enabled"]


class EndpointViewSet(ValuesListMixin, viewsets.ModelViewSet):
    """Gateway endpoints, looked up by name; `connection` is the connection's name."""

    # The connection's secrets column is deferred: listing endpoints never decrypts credentials.

    queryset = Endpoint.objects.select_related("connection").defer("connection__secrets")
    serializer_class = EndpointSerializer
    # The list reads values, not instances: the serializer's output, checked against it by the tests.
    values_list = ValuesList(EndpointSerializer)
    permission_classes = [ModelPermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_IN_URL
    filterset_class = EndpointFilter
    ordering_fields = ["name", "updated_at"]
    ordering = ["name"]

    def perform_destroy(self, endpoint: Endpoint) -> None:
        endpoint_delete(endpoint=endpoint, actor=self.request.user)
