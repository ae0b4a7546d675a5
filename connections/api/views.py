"""`/api/v1/connections/` and `/api/v1/providers/`."""

import django_filters
from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.api.serializers import AuditEntrySerializer
from core.api import NAME_IN_URL, ModelPermissions, has_permission
from providers import catalogue

from ..editing import RowLockedForEdit
from ..models import Connection, Rotation, each_endpoint_once
from ..services import ConnectionInUse, connection_delete, connection_test
from .serializers import ConnectionSerializer, ProviderSerializer


class ConnectionFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(choices=catalogue.provider_choices)
    team = django_filters.CharFilter(field_name="team__name", label="The team's name")
    rotation = django_filters.ChoiceFilter(choices=Rotation.choices, method="filter_rotation",
                                           label="Where the key stands against its maximum age")

    class Meta:
        model = Connection
        fields = ["provider", "environment", "rotation", "team"]

    def filter_rotation(self, queryset, name, value):
        return queryset.rotation(value)


class ConnectionViewSet(RowLockedForEdit, viewsets.ModelViewSet):
    """Connections, looked up by name. Every write is recorded in the audit log with the authenticated user."""

    queryset = Connection.objects.select_related("created_by", "updated_by", "team").prefetch_related(each_endpoint_once())
    serializer_class = ConnectionSerializer
    permission_classes = [ModelPermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_IN_URL
    filterset_class = ConnectionFilter
    ordering_fields = ["name", "updated_at"]
    ordering = ["name"]

    def get_queryset(self):
        """Only the connections of the user's teams: another team's is answered as one that does not exist."""
        return super().get_queryset().visible_to(self.request.user)

    @extend_schema(
        responses={
            204: None,
            409: inline_serializer(
                "ConnectionInUse",
                {"detail": serializers.CharField(), "endpoints": serializers.ListField(child=serializers.CharField())},
            ),
        }
    )
    def update(self, request, *args, **kwargs):
        """PUT and PATCH: read (locked), merge and save in one transaction, so concurrent edits both survive."""
        with transaction.atomic():
            return super().update(request, *args, **kwargs)

    def destroy(self, request, *args, **kwargs):
        connection = self.get_object()
        try:
            connection_delete(connection=connection, actor=request.user)
        except ConnectionInUse as error:
            return Response({"detail": str(error), "endpoints": error.endpoint_names}, status=status.HTTP_409_CONFLICT)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses=AuditEntrySerializer(many=True))
    @action(
        detail=True,
        methods=["get"],
        serializer_class=AuditEntrySerializer,
        permission_classes=[ModelPermissions, has_permission("audit.view_auditentry")],
        filter_backends=[],
    )
    def history(self, request, name=None):
        """The connection's audit entries, newest first."""
        connection = self.get_object()
        page = self.paginate_queryset(connection.audit_entries())
        return self.get_paginated_response(AuditEntrySerializer(page, many=True).data)


    @extend_schema(
        request=None,
        responses=inline_serializer(
            "ConnectionTestResult",
            {
                "ok": serializers.BooleanField(),
                "status": serializers.IntegerField(allow_null=True),
                "message": serializers.CharField(),
            },
        ),
    )
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[has_permission("connections.change_connection")],
        filter_backends=[],
    )
    def test(self, request, name=None):
        """Call the provider's cheapest authenticated route (list models or equivalent) with the stored credentials.

        Needs `connections.change_connection`: it spends the stored key and tells whether it works."""
        result = connection_test(connection=self.get_object())
        return Response({"ok": result.ok, "status": result.status, "message": result.message})


class ProviderListView(generics.ListAPIView):
    """The provider catalogue, unpaginated: what each provider and auth method needs."""

    serializer_class = ProviderSerializer
    pagination_class = None
    filter_backends = []

    def get_queryset(self):
        return catalogue.PROVIDER_LIST
