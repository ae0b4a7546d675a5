from rest_framework import serializers

from ..models import AuditEntry


class AuditEntrySerializer(serializers.ModelSerializer):
    """One audit entry: who, what, which connection or endpoint (its name at the time), the field names (never values)."""

    actor = serializers.CharField(source="actor_name", read_only=True)
    connection = serializers.CharField(source="connection_name", read_only=True)
    endpoint = serializers.CharField(source="endpoint_name", read_only=True)
    fields = serializers.ListField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = AuditEntry
        fields = ["at", "actor", "action", "connection", "endpoint", "fields"]
        read_only_fields = fields
