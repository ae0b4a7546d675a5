"""API shapes of connections and the provider catalogue; the rules stay in the model and the catalogue."""

from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.extensions import OpenApiSerializerFieldExtension
from rest_framework import serializers

from core.api import JSONObjectField, ModelCleanSerializer, django_errors_to_drf
from core.names import validate_name
from teams.api import NAME_THE_TEAM, TeamField, only_team_of

from ..models import Connection, Rotation
from ..services import connection_save


class SecretsField(JSONObjectField):
    """Secret values in, masks out: the stored plaintext never leaves through the API."""

    def get_attribute(self, instance: Connection) -> Connection:
        return instance

    def to_representation(self, connection: Connection) -> dict[str, str]:
        return connection.masked_secrets()


class ConfigField(JSONObjectField):
    default_error_messages = {"null_character": "Values must not contain the NUL character."}

    def to_internal_value(self, data):
        data = super().to_internal_value(data)
        if any(isinstance(value, str) and "\x00" in value for value in data.values()):
            self.fail("null_character")
        return data


class SecretsFieldSchema(OpenApiSerializerFieldExtension):
    """In the OpenAPI schema, secret values are write-only; responses describe masks."""

    target_class = SecretsField

    def map_serializer_field(self, auto_schema, direction):
        if direction == "request":
            return {
                "type": "object",
                "additionalProperties": {"type": "string"},
                "writeOnly": True,
                "description": "Secret field name → value, for the auth method's secret fields. Write-only: "
                "never returned. On update only the named fields change; `{}` changes nothing.",
            }
        return {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "readOnly": True,
            "description": "Secret field name → mask (such as `sk-...wxyz`), or `cannot be decrypted`.",
        }


class ConfigFieldSchema(OpenApiSerializerFieldExtension):
    target_class = ConfigField

    def map_serializer_field(self, auto_schema, direction):
        return {
            "type": "object",
            "additionalProperties": {"type": "string"},
            "description": "The auth method's non-secret fields (see /api/v1/providers/).",
        }


class ConnectionSerializer(ModelCleanSerializer):
    """A connection; `secrets` merges on update (named fields change, `{}` keeps all) and reads back as masks."""

    secrets = SecretsField(required=False)
    config = ConfigField(required=False)
    team = TeamField(required=False)
    endpoints = serializers.SlugRelatedField(many=True, read_only=True, slug_field="name")
    created_by = serializers.SlugRelatedField(read_only=True, slug_field="username", allow_null=True)
    updated_by = serializers.SlugRelatedField(read_only=True, slug_field="username", allow_null=True)
    key_age_days = serializers.IntegerField(read_only=True, allow_null=True,
                                            help_text="Whole days since the credentials were set; null without a key.")
    key_due_at = serializers.DateTimeField(read_only=True, allow_null=True,
                                           help_text="When the key becomes overdue for rotation; null without a key.")
    rotation_status = serializers.ChoiceField(choices=Rotation.choices, read_only=True,
                                              help_text="ok, due_soon (within 14 days of key_due_at), overdue or no_key.")

    class Meta:
        model = Connection
        fields = [
            "name", "team", "provider", "auth_method", "environment", "secrets", "config", "description", "endpoints",
            "created_at", "updated_at", "secrets_updated_at", "last_used_at", "created_by", "updated_by",
            "key_max_age_days", "key_age_days", "key_due_at", "rotation_status",
        ]
        read_only_fields = ["created_at", "updated_at", "secrets_updated_at", "last_used_at"]

    def validate(self, attrs: dict) -> dict:
        if self.instance is None and "team" not in attrs:
            attrs["team"] = only_team_of(self.context["request"].user)
            if attrs["team"] is None:
                raise serializers.ValidationError({"team": [NAME_THE_TEAM]})
        return super().validate(attrs)

    def build_instance(self, attrs: dict) -> Connection:
        secrets = attrs.pop("secrets", {})
        connection = super().build_instance(attrs)
        # After provider/auth method are set: a method change starts the secrets afresh (Connection.update_secrets).
        connection.update_secrets(secrets)
        return connection

    def save_instance(self, connection: Connection) -> Connection:
        return connection_save(connection=connection, actor=self.context["request"].user)


class ConnectionTestSerializer(ConnectionSerializer):
    """A connection body whose credentials are tested, never saved: the body of a write (so a client can test
    what it is about to send), with provider, auth method, secrets and config checked exactly as a write checks
    them; the name is optional and may be taken, and the fields a test does not read are only shape-checked."""

    class Meta(ConnectionSerializer.Meta):
        # The name only labels messages: its rule holds (it may appear in them), its uniqueness does not matter.
        extra_kwargs = {"name": {"required": False, "validators": [validate_name]}}

    def validate(self, attrs: dict) -> dict:
        instance = self.build_instance(attrs)
        not_read = [field.name for field in instance._meta.fields if field.name not in ("provider", "auth_method")]
        try:
            instance.full_clean(exclude=not_read, validate_unique=False)  # clean() runs: the catalogue's rules
        except DjangoValidationError as error:
            raise serializers.ValidationError(django_errors_to_drf(error)) from None
        self.cleaned_instance = instance
        return attrs

    def save_instance(self, connection: Connection) -> Connection:
        raise TypeError("A tested connection is never saved.")


class ConnectionTestResultSerializer(serializers.Serializer):
    """A Test's answer: whether the provider accepted the credentials, its HTTP status, what it said."""

    ok = serializers.BooleanField()
    status = serializers.IntegerField(allow_null=True)
    message = serializers.CharField()


class SecretFieldSpecSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    required = serializers.BooleanField()


class ConfigFieldSpecSerializer(SecretFieldSpecSerializer):
    default = serializers.CharField()


class AuthMethodSpecSerializer(serializers.Serializer):
    id = serializers.CharField()
    label = serializers.CharField()
    secret_fields = SecretFieldSpecSerializer(many=True)
    config_fields = ConfigFieldSpecSerializer(many=True)


class ProviderSerializer(serializers.Serializer):
    """A catalogue entry as `/api/v1/providers/` lists it."""

    id = serializers.CharField()
    label = serializers.CharField()
    tasks = serializers.ListField(child=serializers.CharField())
    auth_methods = AuthMethodSpecSerializer(many=True)
