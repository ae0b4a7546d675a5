"""A short API page is remembered with the write stamps of every table read for it; asked for again it reads only
the stamps, and it still follows every write to what it shows (core.rows.Pages, core.api_lists.ValuesListMixin)."""

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from connections.models import Connection
from endpoints.models import Destination, Endpoint
from teams.models import Team
from tests.api_support import bearer_client, make_user, operator  # noqa: F401 - fixtures

# Transactions of their own: a page read inside a transaction is never remembered (it may be rolled back).
pytestmark = pytest.mark.django_db(transaction=True)

PAGE = "/api/v1/endpoints/?page_size=2"


@pytest.fixture
def client(make_connection, make_endpoint, operator, settings):
    settings.DATABASE_PREPARED_STATEMENTS = False  # a prepared statement's text is not captured
    primary, spare = make_connection("c"), make_connection("spare")
    for number in range(3):
        make_endpoint(f"e-{number}", primary, fallbacks=((spare, "gpt-4o"),))
    return bearer_client(operator)


def read(client, path: str = PAGE) -> tuple[dict, list[str]]:
    """The list's JSON, and the statements the request ran."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(path)
    assert response.status_code == 200
    return response.json(), [query["sql"] for query in queries]


def read_afresh(client, path: str = PAGE) -> dict:
    """The list as a request inside a transaction reads it: from its rows, never remembered."""
    with transaction.atomic():
        return read(client, path)[0]


def reads_the_page(statements: list[str]) -> bool:
    """Whether the statements read the endpoints or their destinations (with the page, or by a statement of their
    own, as on SQLite)."""
    return any(f'FROM "{table}"' in statement for statement in statements
               for table in ("endpoints_endpoint", "endpoints_destination"))


def test_a_page_read_again_with_nothing_written_is_given_without_reading_it(client):
    first, first_statements = read(client)
    again, statements = read(client)

    assert again == first == read_afresh(client)
    assert reads_the_page(first_statements) and not reads_the_page(statements)
    # The token's and the user's permissions' statements, then a read of the write stamps instead of the page.
    assert [statement for statement in statements if "core_writestamp" in statement] == statements[-1:]
    assert statements[-1].startswith('SELECT "core_writestamp"."stamp"')
    assert len(statements) < len(first_statements)


def test_each_page_size_and_page_is_remembered_apart(client):
    first_pages = [read(client, path)[0] for path in (PAGE, PAGE + "&page=2", "/api/v1/endpoints/?page_size=3")]
    again = [read(client, path)[0] for path in (PAGE, PAGE + "&page=2", "/api/v1/endpoints/?page_size=3")]

    assert again == first_pages
    assert [item["name"] for item in again[0]["results"]] == ["e-0", "e-1"]
    assert [item["name"] for item in again[1]["results"]] == ["e-2"]
    assert len(again[2]["results"]) == 3


def test_the_page_follows_every_write_to_what_it_shows(client, make_endpoint, operator):
    """Each write below changes what the first page shows; each read after it is the list read afresh."""
    read(client)
    connection_c = Connection.objects.get(name="c")

    def changed(write) -> dict:
        before = read(client)[0]
        write()
        after = read(client)[0]
        assert after == read_afresh(client)
        assert after != before
        return after

    changed(lambda: make_endpoint("a-first", connection_c))  # a new row on the page
    changed(lambda: Endpoint.objects.filter(name="a-first").delete())
    changed(lambda: Endpoint.objects.filter(name="e-0").update(enabled=False))
    until = timezone.now() + timedelta(minutes=5)
    after = changed(lambda: Destination.objects.filter(endpoint__name="e-0", position=1).update(cooling_until=until))
    assert after["results"][0]["destinations"][1]["cooling_until"] is not None
    with connection.cursor() as cursor:  # as another program writing to the database would
        after = changed(lambda: cursor.execute("UPDATE connections_connection SET name = 'renamed' WHERE name = 'c'"))
    assert after["results"][0]["connection"] == "renamed"
    changed(lambda: Connection.objects.filter(name="spare").update(environment="staging"))
    elsewhere = Team.objects.create(name="elsewhere")
    changed(lambda: Endpoint.objects.filter(name="e-0").update(team=elsewhere))  # no longer the operator's team's
    after = changed(lambda: elsewhere.members.add(operator))
    assert after["results"][0]["team"] == "elsewhere"
    after = changed(lambda: Team.objects.filter(pk=elsewhere.pk).update(name="renamed-team"))
    assert after["results"][0]["team"] == "renamed-team"


def test_times_are_shown_in_the_zone_of_the_request_that_reads_them(client, settings):
    settings.TIME_ZONE = "UTC"
    in_utc = read(client)[0]
    settings.TIME_ZONE = "Asia/Kolkata"
    in_kolkata = read(client)[0]

    assert in_utc["results"][0]["created_at"].endswith("Z")
    assert in_kolkata["results"][0]["created_at"].endswith("+05:30")
    assert in_kolkata == read_afresh(client)


def test_inside_a_transaction_a_page_is_read_every_time(client):
    read(client)
    read(client)
    with transaction.atomic():
        assert reads_the_page(read(client)[1])
        Endpoint.objects.filter(name="e-0").update(enabled=False)  # seen inside, not yet committed
        assert read(client)[0]["results"][0]["enabled"] is False


def test_ages_against_the_time_now_are_worked_out_again_on_a_remembered_page(client, monkeypatch):
    """The connections list shows each key's age and rotation status, which change with the time alone."""
    connections = "/api/v1/connections/?page_size=2"
    first = read(client, connections)[0]
    later = timezone.now() + timedelta(days=400)
    monkeypatch.setattr(timezone, "now", lambda: later)
    again, statements = read(client, connections)

    assert not any(f'FROM "{table}"' in statement for statement in statements
                   for table in ("connections_connection", "endpoints_destination"))  # remembered
    assert again == read_afresh(client, connections)
    assert [item["key_age_days"] for item in again["results"]] == [
        item["key_age_days"] + 400 for item in first["results"]]
    assert {item["rotation_status"] for item in first["results"]} == {"ok"}
    assert {item["rotation_status"] for item in again["results"]} == {"overdue"}


def test_the_connections_page_follows_a_renamed_user_and_endpoint(client, operator):
    connections = "/api/v1/connections/?page_size=2"
    Connection.objects.update(created_by=operator)
    before = read(client, connections)[0]
    type(operator).objects.filter(pk=operator.pk).update(username="renamed-user")
    Endpoint.objects.filter(name="e-0").update(name="e-renamed")
    after = read(client, connections)[0]

    assert after == read_afresh(client, connections)
    assert before["results"][0]["created_by"] != "renamed-user"
    assert after["results"][0]["created_by"] == "renamed-user"
    assert "e-renamed" in after["results"][0]["endpoints"]
