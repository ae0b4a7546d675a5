from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache
from operator import itemgetter

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import connection as database
from django.core.signals import setting_changed
from django.db import connections, models
from django.dispatch import receiver
from django.utils import timezone

from connections.models import Connection, environments_mixed
from core.changes import RemembersLoadedState
from core.limits import CallLimits
from core.names import NAME_HELP, validate_name
from core.rows import RowReader, by_name, run
from providers import catalogue
from providers.adapters.base import Target
from teams.models import Membership, Team, TeamScopedQuerySet

MAX_DESTINATIONS = 10
TOTAL_WEIGHT = 100
DEFAULT_DEADLINE_SECONDS = 120
MAX_DEADLINE_SECONDS = 3600


class FallbackOn(models.TextChoices):
    """The failures of a destination after which a call goes on to the next one."""

    CONNECTION_ERROR = "connection_error", "Connection errors (unreachable, broken answer)"
    TIMEOUT = "timeout", "Timeouts"
    RATE_LIMITED = "rate_limited", "Rate limited (429)"
    SERVER_ERROR = "server_error", "Provider errors (5xx)"
    CREDENTIALS_REFUSED = "credentials_refused", "Credentials refused (401, 403)"


def default_fallback_on() -> list[str]:
    return [FallbackOn.CONNECTION_ERROR, FallbackOn.TIMEOUT, FallbackOn.RATE_LIMITED, FallbackOn.SERVER_ERROR]


class ChoiceListField(models.JSONField):
    """A list of choices stored as JSON, edited as checkboxes on the page and in the admin."""

    def __init__(self, *args, choice_class: type[models.TextChoices] = FallbackOn, **kwargs):
        self.choice_class = choice_class
        super().__init__(*args, **kwargs)

    def deconstruct(self):
        name, path, args, kwargs = super().deconstruct()
        return name, "django.db.models.JSONField", args, kwargs

    def formfield(self, **kwargs):
        from django import forms

        return forms.TypedMultipleChoiceField(
            choices=self.choice_class.choices, required=False, widget=forms.CheckboxSelectMultiple,
            label=self.verbose_name.capitalize(), help_text=self.help_text,
            initial=self.get_default() if self.has_default() else None,
        )

    def validate(self, value, model_instance) -> None:
        super().validate(value, model_instance)
        known = set(self.choice_class.values)
        if not isinstance(value, list) or not all(isinstance(item, str) and item in known for item in value):
            raise ValidationError(f"Choose among: {', '.join(self.choice_class.values)}.", code="invalid_choice")
        if len(set(value)) != len(value):
            raise ValidationError("Name each failure once.", code="duplicate")


class EndpointQuerySet(TeamScopedQuerySet):
    pass


class EndpointManager(models.Manager.from_queryset(EndpointQuerySet)):
    def for_call(self, name: str, *, user_id: int | None = None, shared: bool = False) -> "Endpoint | None":
        """The endpoint and its destinations in call order (`endpoint.routes`), or None.

        With `user_id`, only an endpoint of one of that user's teams is found (a subquery of the same
        statement, so the call costs no query more); without, any (a superuser's token, the benchmarks).

        The gateway's read on every call, in one hand-written statement: through the query builder this
        costs several times the CPU (docs/benchmarks.md), mostly compiling the same query again. The
        statement runs on every call, so a disabled endpoint, a rotated key or a cooldown takes effect on
        the very next call in every server process. A destination's row, and its connection's (secrets
        decrypted), are built only when a call goes to it: fallbacks that are not tried cost next to nothing.

        `shared`: the instances may be those an earlier call got from the very same rows (the statement still
        runs every time; only building them again is skipped): for a caller that reads them and changes
        nothing but what it also writes to the database (a cooldown, the last use).
        """
        statement, names, readers = endpoint_statement(database.alias, user_id is not None)
        with database.cursor() as cursor:
            run(cursor, statement, names, [name] if user_id is None else [name, user_id])
            rows = cursor.fetchall()
        if not rows:
            return None
        if shared:
            key = (database.alias, name, user_id)
            if (built := BUILT.get(key)) is not None and built[0] == rows:
                return built[1]
        endpoint_reader, destination_reader, connection_reader = readers
        first, second = len(endpoint_reader.columns), len(endpoint_reader.columns) + len(destination_reader.columns)
        endpoint = endpoint_reader.build(rows[0][:first])
        endpoint.routes = []
        if rows[0][first] is None:  # LEFT JOIN: an endpoint without destinations
            return endpoint
        fetched = rows
        places = destination_places(destination_reader, first)
        if len(rows) > 1:
            rows = sorted(rows, key=call_order(destination_reader, first))  # in SQL, a sort of every row's width
        by_connection: dict[object, Route] = {}
        for row in rows:
            route = Route(endpoint, row, first, second, readers, places)
            route.shared = by_connection.setdefault(route.connection_id, route)
            endpoint.routes.append(route)
        if shared:
            if len(BUILT) >= BUILT_MOST:
                BUILT.clear()
            BUILT[key] = (fetched, endpoint)
        return endpoint


# Endpoints as the gateway last read them, by (alias, name, user id): the rows they were built from and the
# instances. A call whose statement returns the same rows reuses them; any change to a column (a rotated key,
# a cooldown, a disabled endpoint) gives other rows and a fresh build. Bounded; emptied when settings change
# (the encryption keys decide what a connection's secrets decrypt to).
BUILT: dict[tuple, tuple[list, "Endpoint"]] = {}
BUILT_MOST = 1024


@receiver(setting_changed)
def forget_built(**kwargs) -> None:
    BUILT.clear()


class Route:
    """A destination as read for a call: what choosing it needs (role, weight, cooldown) at once, the
    Destination and its Connection (secrets decrypted) on first use."""

    __slots__ = ("endpoint", "row", "first", "second", "readers", "role", "weight", "cooling_until",
                 "connection_id", "shared", "_destination", "_connection")

    def __init__(self, endpoint: "Endpoint", row: Sequence, first: int, second: int, readers: tuple,
                 places: tuple[int, int, int, int]):
        self.endpoint, self.row, self.first, self.second, self.readers = endpoint, row, first, second, readers
        role, weight, cooling, connection = places
        self.role = row[role]
        self.weight = row[weight]
        raw = row[cooling]
        self.cooling_until = readers[1].convert(cooling - first, raw) if raw is not None else None
        self.connection_id = row[connection]
        self.shared: Route = self
        self._destination: Destination | None = None
        self._connection: Connection | None = None

    def __repr__(self) -> str:
        return f"<Route {self.role} weight={self.weight}>"

    @property
    def destination(self) -> "Destination":
        if self._destination is None:
            self._destination = self.readers[1].build(self.row[self.first:self.second])
            self._destination.endpoint = self.endpoint
            self._destination.connection = self.connection()
        return self._destination

    def connection(self) -> Connection:
        if self.shared is not self:
            return self.shared.connection()
        if self._connection is None:
            self._connection = self.readers[2].build(self.row[self.second:])
        return self._connection

    @property
    def label(self) -> str:
        """`<connection>/<model>`, as response headers and messages name a destination."""
        return self.destination.label

    def cooling(self, now: datetime) -> bool:
        return self.cooling_until is not None and self.cooling_until > now


@cache
def destination_places(reader: RowReader, first: int) -> tuple[int, int, int, int]:
    """Where role, weight, cooling_until and connection_id are in a row whose destination columns start at `first`."""
    return tuple(first + reader.attnames.index(name) for name in ("role", "weight", "cooling_until", "connection_id"))


@cache
def call_order(reader: RowReader, first: int) -> itemgetter:
    """The key that puts rows whose destination columns start at `first` in call order: position, then id."""
    return itemgetter(first + reader.attnames.index("position"), first + reader.attnames.index("id"))


class Endpoint(RemembersLoadedState, CallLimits):
    """A gateway route to one or more destinations (a connection and a model each): a weighted split of
    primaries, then fallbacks in order when a call fails in a way the endpoint retries."""

    name = models.CharField(max_length=64, unique=True, validators=[validate_name], help_text=NAME_HELP)
    # Names stay unique across teams: a call names the endpoint alone (`"model": "<endpoint>"`).
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="endpoints",
                             help_text="Only the team's members see, change and call this endpoint; it uses "
                                       "only the team's connections.")
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
    fallback_on = ChoiceListField(
        "fall back on", default=default_fallback_on, blank=True,
        help_text="Failures after which a call goes on to the next destination. A refused request (400) never does.",
    )
    deadline_seconds = models.PositiveIntegerField(
        "deadline (seconds)", default=DEFAULT_DEADLINE_SECONDS,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_DEADLINE_SECONDS)],
        help_text="How long a call may take over all its attempts, until the answer (or a stream's first byte).",
    )
    # Every connection a destination uses: `connection.endpoints` lists the endpoints that depend on it.
    connections = models.ManyToManyField(Connection, through="Destination", related_name="endpoints")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = EndpointManager()

    audit_subject_type = "endpoint"
    tracked_fields = ("name", "team", "task", "enabled", "fallback_on", "deadline_seconds", "allow_mixed_environments",
                      *CallLimits.limit_fields)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        return f"<Endpoint {self.name!r} {self.task}>"

    def clean_fields(self, exclude=None) -> None:
        if self.team_id is None:
            self.team = Team.objects.default()
        if not self._state.adding and self.team_id == self.loaded_value("team"):
            exclude = {*(exclude or ()), "team"}  # the stored team needs no query to check it exists
        super().clean_fields(exclude)

    def save(self, *args, **kwargs) -> None:
        if self.team_id is None:
            self.team = Team.objects.default()
        super().save(*args, **kwargs)

    def snapshot(self) -> dict:
        snapshot = super().snapshot()
        if isinstance(snapshot.get("fallback_on"), list):
            snapshot["fallback_on"] = sorted(snapshot["fallback_on"])
        return snapshot

    def check_destinations(self, destinations: Sequence["Destination"]) -> None:
        """The rules a set of destinations must keep together (each one checks its own in Destination.clean).

        Raises ValidationError keyed `destinations`: every surface (page, API, admin, services) asks this.
        """
        errors = []
        live = [d for d in destinations if d is not None]
        primaries = [d for d in live if d.role == Destination.Role.PRIMARY]
        if not primaries:
            errors.append("Add at least one primary destination.")
        else:
            total = sum(d.weight or 0 for d in primaries)
            if total != TOTAL_WEIGHT:
                errors.append(f"The primary destinations' weights add up to {total}; they must add up to {TOTAL_WEIGHT}.")
        if len(live) > MAX_DESTINATIONS:
            errors.append(f"An endpoint has at most {MAX_DESTINATIONS} destinations ({len(live)} given).")
        if self.team_id is not None:
            for destination in live:
                if destination.connection_id is not None and destination.connection.team_id != self.team_id:
                    # Named as the endpoint's own team would see it: the connection is not among its connections.
                    errors.append(f"{destination.connection.name} is not a connection of team {self.team}: "
                                  f"an endpoint uses only its own team's connections.")
        seen = set()
        for destination in live:
            key = (destination.role, destination.connection_id, destination.model)
            if key in seen:
                name = destination.connection.name if destination.connection_id else "?"
                errors.append(f"{name}/{destination.model} is listed twice as a {destination.role} destination.")
            seen.add(key)
        connections = self.connections_used(live)
        if not self.allow_mixed_environments and environments_mixed(c.environment for c in connections):
            listed = ", ".join(f"{c.name} ({c.get_environment_display()})" for c in connections)
            errors.append(f"This endpoint would mix production and non-production connections ({listed}); "
                          f"allow mixed environments to save it.")
        if errors:
            raise ValidationError({"destinations": errors})

    def connections_used(self, destinations: Sequence["Destination"] | None = None) -> list[Connection]:
        """Every connection a call through this endpoint may use, primary or fallback, once each in the
        destinations' order (the environment rule looks at them all); the saved destinations unless given."""
        if destinations is None:
            destinations = self.destinations.select_related("connection") if self.pk is not None else []
        used: dict[object, Connection] = {}
        for destination in destinations:
            if destination is not None and destination.connection_id is not None:
                used.setdefault(destination.connection_id, destination.connection)
        return list(used.values())

    def split_text(self, destinations: Sequence["Destination"] | None = None) -> str:
        """`openai-prod 70% · azure-prod 30%, then anthropic-backup`, as the endpoint list shows it."""
        destinations = list(self.destinations.all()) if destinations is None else destinations
        return split_line([(d.role, d.weight, d.connection.name) for d in destinations])


def split_line(destinations: Sequence[tuple[str, int | None, str]]) -> str:
    """The split of (role, weight, connection name) in call order, as `Endpoint.split_text` shows it (lists that
    read values rather than instances give the same tuples)."""
    primaries = [(weight, name) for role, weight, name in destinations if role == Destination.Role.PRIMARY]
    fallbacks = [name for role, _, name in destinations if role == Destination.Role.FALLBACK]
    if len(primaries) == 1:
        text = primaries[0][1]
    else:
        text = " · ".join(f"{name} {weight}%" for weight, name in primaries)
    if fallbacks:
        text += ", then " + ", then ".join(fallbacks)
    return text


class Destination(models.Model):
    """One way an endpoint's calls can go: a connection and the provider's model id, as a weighted primary
    or as a fallback in order."""

    class Role(models.TextChoices):
        PRIMARY = "primary", "Primary"
        FALLBACK = "fallback", "Fallback"

    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="destinations")
    # PROTECT: a connection cannot be deleted while any destination, primary or fallback, uses it.
    connection = models.ForeignKey(Connection, on_delete=models.PROTECT, related_name="destinations")
    model = models.CharField(max_length=200, help_text="The provider's model id, such as gpt-4o-mini.")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.PRIMARY)
    weight = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(TOTAL_WEIGHT)],
        help_text="A primary's share of the calls, 1–100; the primaries' weights add up to 100.",
    )
    position = models.PositiveSmallIntegerField(default=0, help_text="Primaries first, then fallbacks in order.")
    # Set by the gateway when the destination just answered 429 or 5xx: calls skip it until then, in
    # every process (the endpoint's read brings it along at no extra cost).
    cooling_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["endpoint", "position"]
        constraints = [
            models.UniqueConstraint(fields=["endpoint", "role", "connection", "model"], name="destination_once_per_role"),
            models.CheckConstraint(
                condition=(models.Q(role="primary", weight__gte=1, weight__lte=TOTAL_WEIGHT)
                           | models.Q(role="fallback", weight__isnull=True)),
                name="destination_weight_by_role",
            ),
        ]

    def __str__(self) -> str:
        """As the admin lists what keeps a connection from being deleted: the endpoint, then the route."""
        return f"{self.endpoint.name}: {self.label}" if self.endpoint_id else self.label

    def __repr__(self) -> str:
        return f"<Destination {self.role} {self.model!r} weight={self.weight}>"

    @property
    def label(self) -> str:
        name = self.connection.name if self.connection_id else "?"
        return f"{name}/{self.model}"

    @property
    def target(self) -> Target:
        """What the provider client calls for this destination."""
        return Target(model=self.model, task=self.endpoint.task)

    def clean(self) -> None:
        """Per destination: a model id, a weight that fits the role, a provider that serves the endpoint's task."""
        errors = {}
        if self.model != self.model.strip() or not self.model.strip():
            errors["model"] = "Enter the provider's model id without surrounding spaces."
        if self.role == self.Role.PRIMARY and self.weight is None:
            errors["weight"] = "Give a primary destination a weight from 1 to 100."
        if self.role == self.Role.FALLBACK:
            self.weight = None  # fallbacks are tried in order; a weight would mean nothing
        # The endpoint, saved or not, is assigned before its destinations are checked.
        task = self.endpoint.task if Destination.endpoint.is_cached(self) else None
        if self.connection_id is not None and task in catalogue.TASKS:
            provider = catalogue.PROVIDERS.get(self.connection.provider)
            if provider and task not in provider.tasks:
                errors["connection"] = (
                    f"{provider.label} does not support {task} (connection {self.connection.name}); "
                    f"it supports: {', '.join(provider.tasks)}."
                )
        if errors:
            raise ValidationError(errors)

    def start_cooldown(self, seconds: float, *, now: datetime | None = None) -> None:
        """Skip this destination for a while in every process (one UPDATE, no save(): no audit, no timestamps)."""
        until = (now or timezone.now()) + timedelta(seconds=seconds)
        Destination.objects.filter(pk=self.pk).update(cooling_until=until)
        self.cooling_until = until


@cache
def endpoint_statement(alias: str, of_a_members_teams: bool = False) -> tuple[str, tuple[str, ...] | None,
                                                                            tuple[RowReader, RowReader, RowReader]]:
    """The endpoint-by-name statement (the endpoint's columns, each destination's, its connection's, one row
    per destination, which `call_order` sorts) as `core.rows.run()` takes it, and the three parts' readers;
    `of_a_members_teams`: only an endpoint of the teams of the user given as the second parameter."""
    readers = RowReader(Endpoint, alias), RowReader(Destination, alias), RowReader(Connection, alias)
    q = connections[alias].ops.quote_name
    columns = [column for table, reader in zip("edc", readers) for column in reader.select_list(table)]
    endpoint, destination, connection = Endpoint._meta, Destination._meta, Connection._meta
    membership = Membership._meta
    sql = (
        f"SELECT {', '.join(columns)} FROM {q(endpoint.db_table)} e "
        f"LEFT JOIN {q(destination.db_table)} d ON d.{q(destination.get_field('endpoint').column)} = e.{q(endpoint.pk.column)} "
        f"LEFT JOIN {q(connection.db_table)} c ON c.{q(connection.pk.column)} = d.{q(destination.get_field('connection').column)} "
        f"WHERE e.{q(endpoint.get_field('name').column)} = %s "
        + (f"AND e.{q(endpoint.get_field('team').column)} IN (SELECT m.{q(membership.get_field('team').column)} "
           f"FROM {q(membership.db_table)} m WHERE m.{q(membership.get_field('user').column)} = %s) "
           if of_a_members_teams else "")
    )
    return *by_name(connections[alias].vendor, sql), readers
