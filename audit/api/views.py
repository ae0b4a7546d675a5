"""`/api/v1/audit/`: the audit log, newest first."""

import django_filters
from rest_framework import mixins, viewsets

from core.api import ModelPermissions

from ..models import AuditEntry
from .serializers import AuditEntrySerializer


class AuditEntryFilter(django_filters.FilterSet):
    connection = django_filters.CharFilter(method="subject_named", label="The connection's name at the time.")
    endpoint = django_filters.CharFilter(method="subject_named", label="The endpoint's name at the time.")
    action = django_filters.ChoiceFilter(choices=AuditEntry.Action.choices)

    class Meta:
        model = AuditEntry
        fields = ["connection", "endpoint", "action"]

    def subject_named(self, queryset, name: str, value: str):
        return queryset.filter(subject_type=name, subject_name=value)


class AuditEntryViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """The audit log, newest first; `?connection=` or `?endpoint=` (the name at the time) and `?action=` narrow it."""

    queryset = AuditEntry.objects.order_by("-at", "-id")
    serializer_class = AuditEntrySerializer
    permission_classes = [ModelPermissions]
    filterset_class = AuditEntryFilter
    ordering_fields = ["at"]

    def get_queryset(self):
        return super().get_queryset().visible_to(self.request.user)
