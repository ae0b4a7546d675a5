"""`/api/v1/connections/`, `/api/v1/audit/` and `/api/v1/providers/`."""

import django_filters
from django.db import transaction
from django.db.models import Prefetch
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import generics, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from config.api import ModelPermissions, has_permission
from config.names import NameConverter
from endpoints.models import Endpoint
from gateway.services import connection_test

from .. import providers
from ..editing import RowLockedForEdit
from ..models import AuditEntry, Connection
from ..services import ConnectionInUse, connection_delete
from .serializers import AuditEntrySerializer, ConnectionSerializer, ProviderSerializer

# Names in URLs: anything up to the next slash, so an odd name is a clean 404 rather than an unrouted path
# (except NUL, which PostgreSQL cannot compare: config.names).
NAME_IN_URL = NameConverter.regex


class ConnectionFilter(django_filters.FilterSet):
    provider = django_filters.ChoiceFilter(choices=providers.provider_choices)

    class Meta:
        model = Connection
        fields = ["provider"]


class ConnectionViewSet(RowLockedForEdit, viewsets.ModelViewSet):
    """Connections, looked up by name. Every write is recorded in the audit log with the authenticated user."""

    queryset = Connection.objects.select_related("created_by", "updated_by").prefetch_related(
        Prefetch("endpoints", queryset=Endpoint.objects.only("id", "name", "connection_id").order_by("name"))
    )
    serializer_class = ConnectionSerializer
    permission_classes = [ModelPermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_IN_URL
    filterset_class = ConnectionFilter
    ordering_fields = ["name", "updated_at"]
    ordering = ["name"]

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
        permission_classes=[ModelPermissions, has_permission("connections.view_auditentry")],
        filter_backends=[],
    )
    def history(self, request, name=None):
        """The connection's audit entries, newest first."""
        connection = self.get_object()
        page = self.paginate_queryset(connection.audit_entries.order_by("-at", "-id"))
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
        permission_classes=[has_permission("connections.view_connection")],
        filter_backends=[],
    )
    def test(self, request, name=None):
        """Call the provider's cheapest authenticated route (list models or equivalent) with the stored credentials."""
        result = connection_test(connection=self.get_object())
        return Response({"ok": result.ok, "status": result.status, "message": result.message})


class AuditEntryFilter(django_filters.FilterSet):
    connection = django_filters.CharFilter(field_name="connection_name")
    action = django_filters.ChoiceFilter(choices=AuditEntry.Action.choices)

    class Meta:
        model = AuditEntry
        fields = ["connection", "action"]


class AuditEntryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The audit log, newest first; `?connection=<name at the time>` and `?action=` narrow it."""

    queryset = AuditEntry.objects.order_by("-at", "-id")
    serializer_class = AuditEntrySerializer
    permission_classes = [ModelPermissions]
    filterset_class = AuditEntryFilter
    ordering_fields = ["at"]


class ProviderListView(generics.ListAPIView):
    """The provider registry, unpaginated: what each provider and auth method needs."""

    serializer_class = ProviderSerializer
    pagination_class = None
    filter_backends = []

    def get_queryset(self):
        return providers.PROVIDER_LIST
