"""`/api/v1/connections/` and `/api/v1/providers/`."""

from collections.abc import Mapping

import django_filters
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view, inline_serializer
from rest_framework import exceptions, generics, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from audit.api.serializers import AuditEntrySerializer
from core.api import NAME_IN_URL, Conflict, ModelPermissions, has_permission
from core.api_lists import Computed, ValuesList, ValuesListMixin, is_plain
from providers import catalogue
from providers.adapters.base import CredentialsCheck

from ..editing import RowLockedForEdit
from ..models import (
    STORED_SECRETS, Connection, Rotation, each_endpoint_once, key_rotation, masks_of_stored,
)
from ..services import (
    ConnectionInUse,
    CredentialsNotVerified,
    connection_delete,
    connection_test,
    connection_test_unsaved,
    connection_verify,
    credentials_of,
)
from .serializers import (
    ConnectionSerializer,
    ConnectionTestResultSerializer,
    ConnectionTestSerializer,
    ProviderSerializer,
)

VERIFY_PARAMETER = OpenApiParameter(
    "verify", OpenApiTypes.BOOL, OpenApiParameter.QUERY,
    description="Ask the provider about the credentials before saving; when it rejects them or cannot be reached, "
    "answer 400 (`detail` and the provider's `verification`) and save nothing.",
)
# A 400 is still any write's field errors; with `?verify=true` it may also be the provider's refusal.
WRITE_REFUSED = OpenApiResponse(
    OpenApiTypes.OBJECT,
    description="Field errors by field name; or, with `?verify=true`, the provider's refusal: `{\"detail\": "
    "\"Not saved: ...\", \"verification\": {\"ok\": false, \"status\": 401 or null, \"message\": \"...\"}}` "
    "(`status` null: the provider could not be reached).",
)


class NotVerified(exceptions.APIException):
    """`?verify=true` and the provider did not accept the credentials: 400 with its verdict, nothing saved."""

    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "credentials_not_verified"

    def __init__(self, refusal: CredentialsNotVerified):
        super().__init__()
        self.detail = {"detail": str(refusal), "verification": check_result(refusal.check)}  # as is: a bool stays one


def check_result(check: CredentialsCheck) -> dict:
    return {"ok": check.ok, "status": check.status, "message": check.message}


def verify_requested(request) -> bool:
    """`?verify=`: true/false (1/0, yes/no…); anything else is a 400."""
    value = request.query_params.get("verify")
    if value is None:
        return False
    try:
        return serializers.BooleanField().to_internal_value(value)
    except serializers.ValidationError:
        raise serializers.ValidationError({"verify": ["Must be true or false."]}) from None


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


ROTATION_COLUMNS = ("auth_method", "secrets_updated_at", "created_at", "key_max_age_days")
ROTATION = "key_rotation"  # where a list row keeps its rotation once worked out


def rotation_field(name: str) -> Computed:
    """A field of the row's key rotation (a KeyRotation attribute), worked out once a row for the three fields
    that show it, against one time now for the whole list."""
    def per_list():
        now = timezone.now()
        # The default maximum age read once a list, not through the settings object for every row.
        default_max_age_days = settings.KEY_MAX_AGE_DAYS

        def value(row: dict):
            rotation = row.get(ROTATION)
            if rotation is None:
                rotation = row[ROTATION] = key_rotation(row["auth_method"], row["secrets_updated_at"],
                                                        row["created_at"],
                                                        row["key_max_age_days"] or default_max_age_days, now)
            return getattr(rotation, name)

        return value

    return Computed(ROTATION_COLUMNS, per_list, by_field=True, per_list=True)


@extend_schema_view(partial_update=extend_schema(parameters=[VERIFY_PARAMETER], responses={200: ConnectionSerializer,
                                                                                           400: WRITE_REFUSED}))
class ConnectionViewSet(RowLockedForEdit, ValuesListMixin, viewsets.ModelViewSet):
    """Connections, looked up by name. Every write is recorded in the audit log with the authenticated user."""

    queryset = Connection.objects.select_related("created_by", "updated_by", "team").prefetch_related(each_endpoint_once())
    serializer_class = ConnectionSerializer
    # The list reads values, not instances: the serializer's output, checked against it by the tests.
    values_list = ValuesList(ConnectionSerializer, computed={
        "secrets": Computed(("provider", "auth_method"), expressions={"stored_secrets": STORED_SECRETS}, represent=(
            lambda row: masks_of_stored(row["stored_secrets"], row["provider"], row["auth_method"])[1]), plain=True),
        "key_age_days": rotation_field("age_days"),
        "key_due_at": rotation_field("due_at"),
        "rotation_status": rotation_field("status"),
    })
    permission_classes = [ModelPermissions]
    lookup_field = "name"
    lookup_value_regex = NAME_IN_URL
    filterset_class = ConnectionFilter
    ordering_fields = ["name", "updated_at"]
    ordering = ["name"]

    def get_queryset(self):
        """Only the connections of the user's teams: another team's is answered as one that does not exist."""
        return super().get_queryset().visible_to(self.request.user)

    def list_queryset(self, user):
        """What `get_queryset()` gives a list request by `user`."""
        return self.queryset.all().visible_to(user)

    verify = False  # `?verify=true` on a write
    verified: str | None = None  # what the provider accepted, when a write asked to verify first

    @extend_schema(parameters=[VERIFY_PARAMETER], responses={201: ConnectionSerializer, 400: WRITE_REFUSED})
    def create(self, request, *args, **kwargs):
        self.verify = verify_requested(request)
        return super().create(request, *args, **kwargs)

    def perform_create(self, serializer: ConnectionSerializer) -> None:
        if self.verify:
            self.verified = self.verify_credentials(serializer.cleaned_instance)
        serializer.save()

    @extend_schema(
        parameters=[VERIFY_PARAMETER],
        responses={
            200: ConnectionSerializer,
            400: WRITE_REFUSED,
            409: inline_serializer(
                "ConnectionInUse",
                {"detail": serializers.CharField(), "endpoints": serializers.ListField(child=serializers.CharField())},
            ),
        }
    )
    def update(self, request, *args, **kwargs):
        """PUT and PATCH: read (locked), merge and save in one transaction, so concurrent edits both survive.

        With `?verify=true` the provider is asked first, outside the transaction (no row stays locked over the
        call); the save then goes on only if it saves what the provider accepted (else 409)."""
        if verify_requested(request):
            with self.row_unlocked():
                look = self.get_serializer(self.get_object(), data=request.data, partial=kwargs.get("partial", False))
            look.is_valid(raise_exception=True)
            self.verified = self.verify_credentials(look.cleaned_instance)
        with transaction.atomic():
            return super().update(request, *args, **kwargs)

    def perform_update(self, serializer: ConnectionSerializer) -> None:
        if self.verified is not None and credentials_of(serializer.cleaned_instance) != self.verified:
            raise Conflict("The connection changed while the provider was asked about its credentials; nothing "
                           "was saved. Send the request again.")
        serializer.save()

    @staticmethod
    def verify_credentials(connection: Connection) -> str:
        try:
            return connection_verify(connection=connection)
        except CredentialsNotVerified as refusal:
            raise NotVerified(refusal) from None

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


    @extend_schema(request=ConnectionTestSerializer(partial=True), responses=ConnectionTestResultSerializer)
    @action(
        detail=True,
        methods=["post"],
        permission_classes=[has_permission("connections.change_connection")],
        filter_backends=[],
        serializer_class=ConnectionTestSerializer,
        locks_row=False,  # nothing is written, and the provider is never called holding a row lock
    )
    def test(self, request, name=None):
        """Call the provider's cheapest authenticated route (list models or equivalent) with the stored credentials,
        or, given a body (as a PATCH's), with those credentials merged over the stored ones. Nothing is saved.

        Needs `connections.change_connection`: it spends the stored key and tells whether it works."""
        connection = self.get_object()
        if isinstance(request.data, Mapping) and not request.data:  # no body, or `{}`: nothing changes
            return Response(check_result(connection_test(connection=connection)))
        serializer = self.get_serializer(connection, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        return Response(check_result(connection_test_unsaved(connection=serializer.cleaned_instance)))


class ConnectionTestView(generics.GenericAPIView):
    """Whether the provider accepts the credentials of a connection body, before it is created; nothing is saved.

    The body is a create's (the name optional): provider, auth method, secrets and config pass the checks of a
    save (addresses, header-safe secrets…). Needs `connections.add_connection` and `change_connection`, as the
    Test of a stored connection: it spends a key and tells whether it works."""

    serializer_class = ConnectionTestSerializer
    permission_classes = [has_permission("connections.add_connection"), has_permission("connections.change_connection")]
    filter_backends = []

    @extend_schema(tags=["connections"], operation_id="connections_test_unsaved",
                   responses=ConnectionTestResultSerializer)
    def post(self, request):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return Response(check_result(connection_test_unsaved(connection=serializer.cleaned_instance)))


class ProviderListView(generics.ListAPIView):
    """The provider catalogue, unpaginated: what each provider and auth method needs."""

    serializer_class = ProviderSerializer
    pagination_class = None
    filter_backends = []

    def get_queryset(self):
        return catalogue.PROVIDER_LIST

    def list(self, request, *args, **kwargs):
        """The catalogue is fixed for the process: represented once (its serializers, nested three deep, were
        most of the answer's time), and plain JSON."""
        response = Response(represented_catalogue(self.get_queryset()))
        response.plain_json = is_plain(response.data)
        return response


_REPRESENTED: dict[int, tuple] = {}


def represented_catalogue(providers) -> list:
    """ProviderSerializer's output for the catalogue, worked out once per catalogue object."""
    found = _REPRESENTED.get(id(providers))
    if found is None or found[0] is not providers:
        found = _REPRESENTED[id(providers)] = (providers, list(ProviderSerializer(providers, many=True).data))
    return found[1]
