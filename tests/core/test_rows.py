"""The compiled statements' converters give the very values the ORM's converters give."""

from datetime import timezone as dt_timezone

import pytest
from django.db import connection
from django.db.models import JSONField
from django.test.utils import CaptureQueriesContext

from core.rows import CompiledQuery, fast_converter
from endpoints.models import Endpoint
from teams.models import Team

STORED = [
    '["timeout", "server_error"]', "[]", "{}", '{"a": 1, "b": [true, false, null, "x"]}', '{"a": 1, "a": 2}',
    "1.5", "[0.1, 1e400, -0.0]", '{"n": 1.0}', "12345678901234567890123456789", "-9223372036854775809",
    "9223372036854775807", "-0", "NaN", "[Infinity]", '"\\ud800"', '"\\u2028 \\u0000 é"', '"text"', "null", "true",
    "not json", "", "[1,]", ' ["spaced"] ', '{"deep": [[[[{"x": [1, "2"]}]]]]}',
]


@pytest.mark.parametrize("stored", STORED)
@pytest.mark.parametrize("field", [JSONField(), Endpoint._meta.get_field("fallback_on")], ids=["json", "subclass"])
def test_a_json_column_reads_as_the_field_reads_it(field, stored):
    expected = field.from_db_value(stored, None, connection)
    converted = fast_converter(field.from_db_value, connection)(stored, None, connection)
    assert repr(converted) == repr(expected)
    assert type(converted) is type(expected)


def test_a_json_field_with_its_own_decoder_keeps_its_converter():
    import json

    class Decoder(json.JSONDecoder):
        pass

    field = JSONField(decoder=Decoder)
    assert fast_converter(field.from_db_value, connection) == field.from_db_value


def prepared_statements() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def team_names() -> CompiledQuery:
    return CompiledQuery(lambda name: Team.objects.filter(name__gte=name).values_list("name").order_by("name"),
                         name="sample-name-7350")


@pytest.mark.django_db
def test_on_postgresql_a_compiled_statement_is_prepared_on_its_connection_and_still_counted():
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's; SQLite's cursor is Django's own")
    Team.objects.bulk_create([Team(name="x-alpha"), Team(name="x-beta"), Team(name="x-gamma")])
    statement = team_names()
    with CaptureQueriesContext(connection) as queries:
        first = statement.fetchall(connection.alias, name="x-b")
        second = statement.fetchall(connection.alias, name="x-alpha")
    assert first == [["x-beta"], ["x-gamma"]]
    assert second == [["x-alpha"], ["x-beta"], ["x-gamma"]]
    assert len(queries) == 2
    ours = [text for text in prepared_statements() if '"teams_team"."name" >= $1' in text]
    assert len(ours) == 1


@pytest.mark.django_db
def test_on_postgresql_nothing_is_prepared_with_prepared_statements_off(settings):
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's; SQLite's cursor is Django's own")
    settings.DATABASE_PREPARED_STATEMENTS = False
    Team.objects.create(name="x-alpha")
    statement = team_names()
    assert statement.fetchall(connection.alias, name="x") == [["x-alpha"]]
    assert statement.fetchall(connection.alias, name="x") == [["x-alpha"]]
    assert not [text for text in prepared_statements() if "teams_team" in text]


@pytest.mark.django_db
def test_on_postgresql_a_compiled_statement_reads_times_as_the_orm_does():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL's timestamp loaders")
    Team.objects.bulk_create([Team(name="x-alpha"), Team(name="x-beta")])
    statement = CompiledQuery(lambda name: Team.objects.filter(name__gte=name).values_list("name", "created_at")
                              .order_by("name"), name="sample-name-7350")
    for _ in range(2):  # read, then prepared and read again
        rows = statement.fetchall(connection.alias, name="x-")
        assert [tuple(row) for row in rows] == list(
            Team.objects.filter(name__gte="x-").values_list("name", "created_at").order_by("name"))
        assert all(created.tzinfo is dt_timezone.utc for _, created in rows)
