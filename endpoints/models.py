from functools import cache

from django.core.exceptions import ValidationError
from django.db import connection as database
from django.db import connections, models

from connections.models import Connection, environments_mixed
from core.changes import RemembersLoadedState
from core.limits import CallLimits
from core.names import NAME_HELP, validate_name
from core.rows import RowReader
from providers import catalogue
from providers.adapters.base import Target


class EndpointManager(models.Manager):
    def for_call(self, name: str) -> "Endpoint | None":
        """The endpoint and its connection (secrets decrypted by their field, as the ORM would), or None.

        The gateway's read on every call, in one hand-written statement: through the query builder this
        costs several times the CPU (docs/benchmarks.md), mostly compiling the same query again. Only the
        statement is cached, never a row, so a disabled endpoint or a rotated key takes effect on the very
        next call in every server process.
        """
        statement, endpoint_reader, connection_reader = endpoint_statement(database.alias)
        with database.cursor() as cursor:
            cursor.execute(statement, [name])
            row = cursor.fetchone()
        if row is None:
            return None
        split = len(endpoint_reader.columns)
        endpoint = endpoint_reader.build(row[:split])
        endpoint.connection = connection_reader.build(row[split:])
        return endpoint


class Endpoint(RemembersLoadedState, CallLimits):
    """A gateway route to one model of a provider, calling it with its connection's current credentials."""

    name = models.CharField(max_length=64, unique=True, validators=[validate_name], help_text=NAME_HELP)
    # PROTECT: a connection cannot be deleted while any endpoint, enabled or not, uses it.
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="endpoints")
    model = models.CharField(max_length=200, help_text="The provider's model id, such as gpt-4o-mini.")
    task = models.CharField(
        max_length=16,
        choices=catalogue.task_choices,
        default="chat",
        error_messages={"invalid_choice": "Unknown task '%(value)s': use chat or embeddings."},
    )
    enabled = models.BooleanField(default=True)
    allow_mixed_environments = models.BooleanField(
        default=False,
        help_text="Allow this endpoint to use production and non-production connections together.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EndpointManager()

    audit_subject_type = "endpoint"
    tracked_fields = ("name", "connection", "model", "task", "enabled", "allow_mixed_environments",
                      *CallLimits.limit_fields)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Endpoint {self.name!r} {self.task} {self.model!r}>"

    @property
    def target(self) -> Target:
        """What the provider client calls for this endpoint."""
        return Target(model=self.model, task=self.task)

    def clean(self) -> None:
        """The task must be one the connection's provider supports."""
        if self.connection_id is None or self.task not in catalogue.TASKS:
            return
        provider = catalogue.PROVIDERS.get(self.connection.provider)
        if provider and self.task not in provider.tasks:
            raise ValidationError(
                {"task": f"{provider.label} does not support {self.task}; it supports: {', '.join(provider.tasks)}."}
            )
        if self.model != self.model.strip() or not self.model.strip():
            raise ValidationError({"model": "Enter the provider's model id without surrounding spaces."})
        connections = self.connections_used()
        if not self.allow_mixed_environments and environments_mixed(c.environment for c in connections):
            listed = ", ".join(f"{c.name} ({c.get_environment_display()})" for c in connections)
            raise ValidationError({"connection": f"This endpoint would mix production and non-production "
                                                 f"connections ({listed}); allow mixed environments to save it."})

    def connections_used(self) -> list[Connection]:
        """Every connection a call through this endpoint may use (the environment rule looks at them all)."""
        return [self.connection]


@cache
def endpoint_statement(alias: str) -> tuple[str, RowReader, RowReader]:
    """The endpoint-by-name statement (the endpoint's columns, then its connection's) and the two halves' readers."""
    endpoint_reader, connection_reader = RowReader(Endpoint, alias), RowReader(Connection, alias)
    q = connections[alias].ops.quote_name
    columns = [f"e.{q(c)}" for c in endpoint_reader.columns] + [f"c.{q(c)}" for c in connection_reader.columns]
    endpoint, connection = Endpoint._meta, Connection._meta
    return (
        f"SELECT {', '.join(columns)} FROM {q(endpoint.db_table)} e "
        f"JOIN {q(connection.db_table)} c ON c.{q(connection.pk.column)} = e.{q(endpoint.get_field('connection').column)} "
        f"WHERE e.{q(endpoint.get_field('name').column)} = %s",
        endpoint_reader,
        connection_reader,
    )
