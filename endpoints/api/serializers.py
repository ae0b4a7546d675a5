from rest_framework import serializers

from connections.models import Connection
from core.api import ModelCleanSerializer, NameRelatedField

from ..models import Endpoint
from ..services import endpoint_save


class EndpointSerializer(ModelCleanSerializer):
    """An endpoint; `connection` is the connection's name, and `provider` comes from it."""

    connection = NameRelatedField(queryset=Connection.objects.defer("secrets"), help_text="The connection's name.")
    provider = serializers.CharField(source="connection.provider", read_only=True)
    environment = serializers.CharField(source="connection.environment", read_only=True,
                                        help_text="The environment of the endpoint's connection.")

    class Meta:
        model = Endpoint
        fields = ["name", "connection", "provider", "environment", "model", "task", "enabled",
                  "allow_mixed_environments", "requests_per_minute", "token_budget", "budget_period",
                  "created_at", "updated_at"]
        read_only_fields = ["created_at", "updated_at"]

    def save_instance(self, endpoint: Endpoint) -> Endpoint:
        endpoint = endpoint_save(endpoint=endpoint, actor=self.context["request"].user)
        # The response names the connection as it is now: a rename may have committed since the request named it.
        endpoint.connection.refresh_from_db(fields=["name", "provider", "environment"])
        return endpoint
