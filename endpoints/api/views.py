import django_filters
from rest_framework import viewsets

from config.api import ModelPermissions
from connections import providers
from connections.api.views import NAME_IN_URL

from ..models import Endpoint
from .serializers import EndpointSerializer


class EndpointFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(field_name="connection__provider", choices=providers.provider_choices)
    connection = django_filters.CharFilter(field_name="connection__name")

    class Meta:
        model = Endpoint
        fields = ["provider", "connection", "task", "enabled"]


class EndpointViewSet(viewsets.ModelViewSet):
    """Gateway endpoints, looked up by name; `connection` is the connection's name."""

    # The connection's secrets column is deferred: listing endpoints never decrypts credentials.

    queryset = Endpoint.objects.select_related("connection").defer("connection__secrets")
    serializer_class = EndpointSerializer
    permission_classes = [ModelPermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_IN_URL
    filterset_class = EndpointFilter
    ordering_fields = ["name", "updated_at"]
    ordering = ["name"]
