"""The gateway's reads on every call, in plain SQL: who calls, and the endpoint with its connection.

Through the ORM's query builder these cost about 2 ms of CPU per call, mostly compiling queries; the two
statements below cost about 0.12 ms together, decrypting the secrets included. Only the statements are
cached, never a row, so a revoked token or permission, a disabled endpoint and a rotated key all take
effect on the very next call in every server process.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection as database
from django.db import connections
from django.db.models import Model
from django.utils import timezone

from connections.models import Connection
from endpoints.models import Endpoint
from tokens.models import LAST_USED_RESOLUTION, TOKEN_PREFIX, ApiToken, hash_token


@dataclass(frozen=True)
class Caller:
    """A token's user as the gateway needs it; read with the same rules as `ApiToken.find` (by hash, not
    revoked, not expired, active user) and Django's ModelBackend (superuser, or the permission given
    directly or through a group)."""

    token_id: int
    user_id: int
    may_call: bool


@cache
def caller_query() -> str:
    """The statement, with table and column names taken from the models (custom user models included)."""
    user_model = get_user_model()
    token, user = ApiToken._meta, user_model._meta
    user_perms = user_model._meta.get_field("user_permissions").remote_field.through._meta
    user_groups = user_model._meta.get_field("groups").remote_field.through._meta
    group_perms = Group._meta.get_field("permissions").remote_field.through._meta
    q = database.ops.quote_name
    return f"""
        SELECT t.{q('id')}, t.{q('user_id')},
               (t.{q('last_used_at')} IS NULL OR t.{q('last_used_at')} < %(stale_before)s) AS stale,
               u.{q('is_superuser')} OR EXISTS (
                   SELECT 1 FROM {q(Permission._meta.db_table)} p
                   JOIN {q(ContentType._meta.db_table)} ct ON ct.{q('id')} = p.{q('content_type_id')}
                   WHERE ct.{q('app_label')} = %(app_label)s AND p.{q('codename')} = %(codename)s AND (
                       p.{q('id')} IN (SELECT up.{q('permission_id')} FROM {q(user_perms.db_table)} up
                                       WHERE up.{q(user_perms.get_field(user.model_name).column)} = u.{q(user.pk.column)})
                       OR p.{q('id')} IN (SELECT gp.{q('permission_id')} FROM {q(group_perms.db_table)} gp
                                          JOIN {q(user_groups.db_table)} ug ON ug.{q('group_id')} = gp.{q('group_id')}
                                          WHERE ug.{q(user_groups.get_field(user.model_name).column)} = u.{q(user.pk.column)})
                   )
               ) AS may_call
        FROM {q(token.db_table)} t
        JOIN {q(user.db_table)} u ON u.{q(user.pk.column)} = t.{q('user_id')}
        WHERE t.{q('key_hash')} = %(key_hash)s AND t.{q('revoked_at')} IS NULL
          AND (t.{q('expires_at')} IS NULL OR t.{q('expires_at')} > %(now)s) AND u.{q('is_active')}
    """


def caller_for(plaintext: str, *, permission: str) -> Caller | None:
    """The token's caller and whether they hold `permission` ("app_label.codename"); None for a bad token.

    Records the token's use at most once a minute, like the API's authentication does.
    """
    if not plaintext.startswith(TOKEN_PREFIX) or len(plaintext) > 200:
        return None
    app_label, codename = permission.split(".", 1)
    now = timezone.now()
    adapt = database.ops.adapt_datetimefield_value
    with database.cursor() as cursor:
        cursor.execute(caller_query(), {
            "key_hash": hash_token(plaintext), "now": adapt(now), "stale_before": adapt(now - LAST_USED_RESOLUTION),
            "app_label": app_label, "codename": codename,
        })
        row = cursor.fetchone()
    if row is None:
        return None
    token_id, user_id, stale, may_call = row
    if stale:
        ApiToken(pk=token_id, last_used_at=None).touch()
    return Caller(token_id=token_id, user_id=user_id, may_call=bool(may_call))


class RowReader:
    """Builds instances of a model from its columns in a raw row, converting values as the ORM would.

    What `raw()` works out on every call (columns, field order, each field's database converters) is worked
    out once per database alias here; building the instance is then `from_db()` on converted values. The
    converters depend only on the backend and the settings, so one thread's serve every thread.
    """

    def __init__(self, model: type[Model], alias: str):
        database = connections[alias]
        self.model = model
        self.alias = alias
        fields = model._meta.concrete_fields
        self.attnames = [field.attname for field in fields]
        self.columns = [field.column for field in fields]
        self.converters = []
        for field in fields:
            column = field.get_col(model._meta.db_table)
            converters = database.ops.get_db_converters(column) + column.get_db_converters(database)
            self.converters.append((column, converters))

    def build(self, values: Sequence) -> Model:
        database = connections[self.alias]
        converted = []
        for value, (column, converters) in zip(values, self.converters):
            for converter in converters:
                value = converter(value, column, database)
            converted.append(value)
        return self.model.from_db(self.alias, self.attnames, converted)


@cache
def endpoint_query(alias: str) -> tuple[str, RowReader, RowReader]:
    """The endpoint-by-name statement (the endpoint's columns, then its connection's) and the two halves' readers."""
    endpoint_reader, connection_reader = RowReader(Endpoint, alias), RowReader(Connection, alias)
    q = connections[alias].ops.quote_name
    columns = [f"e.{q(c)}" for c in endpoint_reader.columns] + [f"c.{q(c)}" for c in connection_reader.columns]
    endpoint, connection = Endpoint._meta, Connection._meta
    statement = (
        f"SELECT {', '.join(columns)} FROM {q(endpoint.db_table)} e "
        f"JOIN {q(connection.db_table)} c ON c.{q(connection.pk.column)} = e.{q(endpoint.get_field('connection').column)} "
        f"WHERE e.{q(endpoint.get_field('name').column)} = %s"
    )
    return statement, endpoint_reader, connection_reader


def endpoint_named(name: str) -> Endpoint | None:
    """The endpoint and its connection (secrets decrypted by their field, as the ORM would), or None."""
    statement, endpoint_reader, connection_reader = endpoint_query(database.alias)
    with database.cursor() as cursor:
        cursor.execute(statement, [name])
        row = cursor.fetchone()
    if row is None:
        return None
    split = len(endpoint_reader.columns)
    endpoint = endpoint_reader.build(row[:split])
    endpoint.connection = connection_reader.build(row[split:])
    return endpoint
