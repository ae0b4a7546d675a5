"""A list's total is counted once, then remembered with the write stamps of what it counts, and still follows
every write to those tables (core.rows.Pages, core/stamps.py)."""

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from connections.models import Connection
from endpoints.models import Endpoint
from teams.models import Team
from tests.api_support import bearer_client, make_user, operator  # noqa: F401 - fixtures

# Transactions of their own: a total read inside a transaction is never remembered (it may be rolled back).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(make_connection, make_endpoint, operator, settings):
    settings.DATABASE_PREPARED_STATEMENTS = False  # a prepared statement's text is not captured
    connection = make_connection("c")
    for number in range(3):
        make_endpoint(f"e-{number}", connection)
    return bearer_client(operator)


def listed(client, page: int = 1) -> tuple[int, list[str]]:
    """The endpoints list's total, and the statements the request ran."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(f"/api/v1/endpoints/?page_size=2&page={page}")
    assert response.status_code == 200
    return response.json()["count"], [query["sql"] for query in queries]


def counts(statements: list[str]) -> bool:
    return any("COUNT(*)" in statement for statement in statements)


def test_a_total_is_counted_once_then_read_by_its_stamps_in_as_many_statements(client):
    first_total, first = listed(client)
    total, remembered = listed(client, page=2)  # another page of the list (the same page is remembered whole)
    with transaction.atomic():
        counted_total, counted = listed(client, page=2)  # inside a transaction: counted again

    assert first_total == total == counted_total == 3
    assert counts(first) and counts(counted) and not counts(remembered)
    assert len(remembered) == len(counted)


def test_the_total_follows_every_write_to_what_it_counts(client, make_endpoint, operator):
    assert listed(client)[0] == 3
    make_endpoint("e-new", Connection.objects.get(name="c"))
    assert listed(client)[0] == 4
    Endpoint.objects.filter(name="e-0").delete()
    assert listed(client)[0] == 3
    elsewhere = Team.objects.create(name="elsewhere")
    with connection.cursor() as cursor:  # as another program writing to the database would
        cursor.execute("UPDATE endpoints_endpoint SET team_id = %s WHERE name = %s", [elsewhere.pk, "e-1"])
    assert listed(client)[0] == 2  # the operator is not in that team
    elsewhere.members.add(operator)
    assert listed(client)[0] == 3
    Team.objects.default().members.remove(operator)
    assert listed(client)[0] == 1


def test_inside_a_transaction_a_list_counts_every_time(client):
    listed(client)
    with transaction.atomic():
        assert counts(listed(client)[1])
        assert counts(listed(client)[1])
