from rest_framework import serializers

from connections.models import Connection
from core.api import ModelCleanSerializer, NameRelatedField

from ..models import Endpoint
from ..services import endpoint_save


class EndpointSerializer(ModelCleanSerializer):
    """An endpoint; `connection` is the connection's name, and `provider` comes from it."""

    connection = NameRelatedField(queryset=Connection.objects.defer("secrets"), help_text="The connection's name.")
    provider = serializers.CharField(source="connection.provider", read_only=True)

    class Meta:
        model = Endpoint
        fields = ["name", "connection", "provider", "model", "task", "enabled", "requests_per_minute", "token_budget",
                  "budget_period", "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def save_instance(self, endpoint: Endpoint) -> Endpoint:
        endpoint = endpoint_save(endpoint=endpoint, actor=self.context["request"].user)
        # The response names the connection as it is now: a rename may have committed since the request named it.
        endpoint.connection.refresh_from_db(fields=["name", "provider"])
        return endpoint
