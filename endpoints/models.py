from django.core.exceptions import ValidationError
from django.db import models

from connections import providers
from connections.models import NAME_HELP, Connection
from connections.validators import validate_name


class Endpoint(models.Model):
    """A gateway route to one model of a provider, calling it with its connection's current credentials."""

    class Task(models.TextChoices):
        CHAT = "chat", "Chat"
        EMBEDDINGS = "embeddings", "Embeddings"

    name = models.CharField(max_length=64, unique=True, validators=[validate_name], help_text=NAME_HELP)
    # PROTECT: a connection cannot be deleted while any endpoint, enabled or not, uses it.
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="endpoints")
    model = models.CharField(max_length=200, help_text="The provider's model id, such as gpt-4o-mini.")
    task = models.CharField(
        max_length=16,
        choices=Task.choices,
        default=Task.CHAT,
        error_messages={"invalid_choice": "Unknown task '%(value)s': use chat or embeddings."},
    )
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Endpoint {self.name!r} {self.task} {self.model!r}>"

    def clean(self) -> None:
        """The task must be one the connection's provider supports."""
        if self.connection_id is None or self.task not in self.Task.values:
            return
        provider = providers.PROVIDERS.get(self.connection.provider)
        if provider and self.task not in provider.tasks:
            raise ValidationError(
                {"task": f"{provider.label} does not support {self.task}; it supports: {', '.join(provider.tasks)}."}
            )
        if self.model != self.model.strip() or not self.model.strip():
            raise ValidationError({"model": "Enter the provider's model id without surrounding spaces."})
