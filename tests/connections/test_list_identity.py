"""The lists' fast paths give exactly what the paths they replaced gave, on the same rows.

The pages render their table rows in Python and the list APIs read `.values()` rows: each is compared here, byte
for byte, with the template the page used before (kept in tests/*/reference/, rendered from model instances with
their usage added as the views once added it) and with the serializer, which still answers detail reads and
writes. A column added to a page goes into its rows function and its reference
template; a field added to a serializer is read by the API's list without more, and checked here.
"""

import re
from datetime import datetime, timedelta
from datetime import timezone as dt_timezone
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.db import connection
from django.db.models import Prefetch
from django.template import engines
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework.renderers import JSONRenderer
from rest_framework.test import APIRequestFactory

from connections.api.serializers import ConnectionSerializer
from connections.models import Connection, each_endpoint_once
from endpoints.api.serializers import EndpointSerializer
from endpoints.models import Destination, Endpoint
from teams.models import Team
from usage.models import UsageDay, UsageHour
from usage.summary import floor, last_day_by
from tests.api_support import (  # noqa: F401 - fixtures
    ALL_API_PERMISSIONS, api, bearer_client, make_user, operator,
)
from tests.conftest import PLANTED_KEY
from tests.databases import on_postgres
from tests.web import login_with_perms

pytestmark = pytest.mark.django_db

TESTS = Path(__file__).resolve().parents[1]
ZONES = ["UTC", "America/New_York", "Asia/Kolkata"]
# 01:30 on the night New York leaves summer time happens twice: the `e` format names no zone for it.
AMBIGUOUS_IN_NEW_YORK = datetime(2026, 11, 1, 5, 30, 7, 123456, tzinfo=dt_timezone.utc)


@pytest.fixture
def rows(operator, use_keys):
    """Connections of every shape a row can take, and endpoints enabled or not, 61 of each kind of page, in two
    teams; the API's operator belongs to both."""
    default, blue = Team.objects.default(), Team.objects.create(name="blue & <green>")
    default.members.add(operator)
    blue.members.add(operator)
    lost_key, key = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    use_keys(lost_key)
    Connection.objects.bulk_create([Connection(name="zz-lost-key", provider="openai", auth_method="api_key",
                                               secrets={"api_key": PLANTED_KEY}, team=default)])
    use_keys(key)  # the key that encrypted zz-lost-key is gone
    shapes = [
        dict(provider="openai", auth_method="api_key", secrets={"api_key": PLANTED_KEY}),
        dict(provider="anthropic", auth_method="api_key", secrets={"api_key": "short"}),
        dict(provider="bedrock", auth_method="access_key",
             secrets={"aws_access_key_id": "AKIA0123456789ABCDEF", "aws_secret_access_key": PLANTED_KEY}),
        dict(provider="openai", auth_method="azure", secrets={"api_key": PLANTED_KEY},
             config={"endpoint_url": "https://r.openai.azure.com", "api_version": "2024-10-21"}),
        dict(provider="ollama", auth_method="none", secrets={}),
    ]
    descriptions = ["", "plain", "<script>alert('x')</script> & \"quoted\" " + "long " * 30]
    environments = ["production", "staging", "development"]
    Connection.objects.bulk_create(
        Connection(name=f"c-{number:03d}", description=descriptions[number % 3], created_by=operator,
                   updated_by=operator if number % 2 else None, environment=environments[number // 2 % 3],
                   key_max_age_days=[None, 1, 45, 3650][number % 4], team=blue if number % 10 == 9 else default,
                   **shapes[number % len(shapes)])
        for number in range(60)
    )
    connections = list(Connection.objects.order_by("name"))
    # Key ages on either side of each policy: 80 days is due soon by the default 90, overdue by 45.
    times = [None, AMBIGUOUS_IN_NEW_YORK, datetime(1999, 12, 31, 23, 59, 59, tzinfo=dt_timezone.utc),
             timezone.now() - timedelta(days=80)]
    for number, connection in enumerate(connections):
        updated = times[number % 4 if number % 5 else 3]
        Connection.objects.filter(pk=connection.pk).update(
            secrets_updated_at=updated,
            created_at=AMBIGUOUS_IN_NEW_YORK + timedelta(minutes=number),
            last_used_at=times[(number + 1) % 3],
            own_key_due_at=(updated + timedelta(days=connection.key_max_age_days)
                            if updated and connection.key_max_age_days else None),
        )
    limits = [dict(), dict(requests_per_minute=60), dict(token_budget=1_000_000, budget_period="day"),
              dict(requests_per_minute=1500, token_budget=2_500_000, budget_period="month")]
    Endpoint.objects.bulk_create(
        Endpoint(name=f"e-{number:03d}", task="chat" if number % 3 else "embeddings", enabled=bool(number % 4),
                 fallback_on=[["timeout", "server_error"], [], ["credentials_refused", "rate_limited", "timeout"]][number % 3],
                 team=blue if number % 5 == 4 else default, **limits[number % 4])
        for number in range(130)
    )
    Destination.objects.bulk_create(destination for number, endpoint in enumerate(Endpoint.objects.order_by("name"))
                                    for destination in destinations_of(number, endpoint, connections))
    # Usage in the last 24 hours (grouped thousands, errors or none) and an older day's last call.
    now = timezone.now()
    hours, days = [], []
    for number, endpoint in enumerate(Endpoint.objects.order_by("name")):
        if number % 3 == 2:
            continue
        calls, errors = [(1, 0), (1_234_567, 1_500), (999, 3), (12, 0)][number % 4]
        connection_id = endpoint.destinations.order_by("position").first().connection_id
        hours.append(UsageHour(hour=floor(now, "hour"), endpoint_id=endpoint.pk,
                               connection_id=connection_id, calls=calls, errors=errors, last_at=now))
        days.append(UsageDay(day=floor(now, "day") - timedelta(days=number % 5), endpoint_id=endpoint.pk,
                             connection_id=connection_id, calls=calls, errors=errors,
                             last_at=[AMBIGUOUS_IN_NEW_YORK, now - timedelta(days=number % 5)][number % 2]))
    UsageHour.objects.bulk_create(hours)
    UsageDay.objects.bulk_create(days)
    return connections


def destinations_of(number: int, endpoint: Endpoint, connections: list[Connection]) -> list[Destination]:
    """One primary; a 70/30 split; fallbacks, one on the primary's connection; a three-way split using one
    connection twice; a primary cooling down. Positions are stored out of creation order."""
    first, second, third = (connections[(number + step) % 40] for step in (0, 7, 11))
    model = f"<m{number}> & 'x' \"y\""
    primary, fallback = Destination.Role.PRIMARY, Destination.Role.FALLBACK
    shapes = [
        [(first, model, primary, 100)],
        [(first, model, primary, 70), (second, "gpt-4o-mini", primary, 30)],
        [(first, model, primary, 100), (third, "claude-3-haiku", fallback, None), (first, "small", fallback, None)],
        [(first, model, primary, 50), (first, "other", primary, 25), (second, "m2", primary, 25),
         (third, "m3", fallback, None)],
        [(second, model, primary, 100), (first, "backup", fallback, None)],
    ]
    shape = shapes[number % len(shapes)]
    return [
        Destination(endpoint=endpoint, connection=connection, model=name, role=role, weight=weight,
                    position=position,
                    cooling_until=AMBIGUOUS_IN_NEW_YORK if number % 5 == 4 and position == 0 else None)
        for position, (connection, name, role, weight) in reversed(list(enumerate(shape)))
    ]


# --- Pages ----------------------------------------------------------------------------------------------------


# What the connections page's context holds besides its rows: filters and the rotation policy.
FILTER_CONTEXT = ("filters", "filter_query", "rotation_choices", "rotation_all", "environment_choices",
                  "environment_all", "team_choices", "team_all", "key_max_age_days")


def with_last_day_of_usage(kind: str, rows, *, last_used: bool = True) -> list:
    """Model instances with `calls_24h`, `errors_24h` and `usage_last_at`, as the templates read them."""
    rows = list(rows)
    usage = last_day_by(kind, [row.pk for row in rows], last_used=last_used)
    for row in rows:
        found = usage.get(row.pk, {})
        row.calls_24h, row.errors_24h = found.get("calls") or 0, found.get("errors") or 0
        row.usage_last_at = found.get("last_at")
    return rows


def reference_page(response, reference: str, name: str, instances) -> str:
    """The page as the reference template renders it from model instances, for the response's page and request."""
    page_obj = response.context_data["page_obj"]
    objects = list(instances[page_obj.start_index() - 1:page_obj.end_index()])
    # A connection's last use is its own last_used_at; an endpoint's comes from the daily totals.
    objects = with_last_day_of_usage(name[:-1], objects, last_used=name == "endpoints")
    template = engines["django"].from_string((TESTS / reference).read_text())
    context = {"paginator": page_obj.paginator, "page_obj": page_obj, "is_paginated": page_obj.has_other_pages(),
               "object_list": objects, name: objects, "view": response.context_data["view"],
               **{key: response.context_data[key] for key in FILTER_CONTEXT if key in response.context_data}}
    return template.render(context, request=response.wsgi_request)


def without_csrf_masks(html: str) -> str:
    """Each render masks the CSRF token afresh: the one difference two renders of the same page may have."""
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', 'name="csrfmiddlewaretoken" value=""', html)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("perms", [("connections.view_connection",),
                                   ("connections.view_connection", "connections.change_connection"),
                                   ("connections.view_connection", "usage.view_usagerecord")])
def test_the_connections_page_is_what_its_template_rendered(client, django_user_model, rows, zone, perms):
    login_with_perms(client, django_user_model, *perms)
    user = django_user_model.objects.get(username="limited")
    Team.objects.default().members.add(user)  # not of the team "blue & <green>": its rows are not shown
    instances = (Connection.objects.order_by("name").select_related("team")  # as the template read them
                 .prefetch_related(each_endpoint_once()).visible_to(user))
    pages = ""
    for path, filtered in (("/settings/connections/", instances),
                           ("/settings/connections/?page=2&x=%3Cb%3E", instances),
                           ("/settings/connections/?environment=staging&rotation=overdue",
                            instances.filter(environment="staging").rotation("overdue")),
                           ("/settings/connections/?rotation=due_soon", instances.rotation("due_soon"))):
        with timezone.override(zone):
            response = client.get(path)
            expected = reference_page(response, "connections/reference/connection_list.html", "connections",
                                      filtered)
        page = response.content.decode()
        assert without_csrf_masks(page) == without_csrf_masks(expected)
        assert ("Test</button>" in page) == ("connections.change_connection" in perms)
        assert ('aria-label="Usage of c-' in page) == ("usage.view_usagerecord" in perms)
        assert "blue &amp; &lt;green&gt;" not in page and "Filter connections by team" not in page
        pages += page
    for shown in ('<span class="badge team-badge" title="Team">default</span>', "cannot be decrypted", "(disabled)", "never", "Access key ID: AKI...CDEF", "no credentials",
                  "&lt;script&gt;", "env-staging", "Development</span>", "no key", " d old", "Overdue</span>",
                  "Due soon</span>", "2,469,134", '<span class="badge badge-danger">3,000</span>'):
        assert shown in pages, shown
    # An endpoint whose destinations use a connection twice is listed once under it.
    row = pages[pages.index('class="name">c-003 '):]
    row = row[:row.index("</tr>")]
    assert row.count('href="/settings/endpoints/e-003/edit/"') == 1


# The endpoints page's rows as the template read them: one query for the endpoints, one for their destinations.
ENDPOINTS_AS_THE_TEMPLATE_READ_THEM = (
    Endpoint.objects.only("name", "task", "enabled", "team__name", *Endpoint.limit_fields)
    .select_related("team")
    .prefetch_related(Prefetch(
        "destinations",
        queryset=Destination.objects.select_related("connection")
        .only("endpoint_id", "role", "weight", "position", "model", "connection__name", "connection__provider")
        .order_by("position"),
    ))
    .order_by("name")
)


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("perms", [("endpoints.view_endpoint",), ("endpoints.view_endpoint", "usage.view_usagerecord")])
def test_the_endpoints_page_is_what_its_template_rendered(client, django_user_model, rows, zone, perms):
    login_with_perms(client, django_user_model, *perms)
    user = django_user_model.objects.get(username="limited")
    Team.objects.default().members.add(user)
    instances = ENDPOINTS_AS_THE_TEMPLATE_READ_THEM.visible_to(user)
    pages = ""
    for path in ("/settings/endpoints/", "/settings/endpoints/?page=3"):
        with timezone.override(zone):
            response = client.get(path)
            expected = reference_page(response, "endpoints/reference/endpoint_list.html", "endpoints", instances)
        page = response.content.decode()
        assert without_csrf_masks(page) == without_csrf_masks(expected)
        assert ('aria-label="Usage of e-' in page) == ("usage.view_usagerecord" in perms)
        assert "blue &amp; &lt;green&gt;" not in page and "Filter endpoints by team" not in page
        pages += page
    for shown in ("badge-ok", '<span class="badge">No</span>', "<td>—</td>", "<td>60/min</td>",
                  "1,500/min · 2,500,000 tokens per month", "1,000,000 tokens per day", "1,234,567",
                  '<span class="badge badge-danger">3</span>', "never", "c-001 70% · c-008 30%</td>",
                  "c-003 50% · c-003 25% · c-010 25%, then c-014</td>", "c-002, then c-013, then c-002</td>",
                  '<code title="OpenAI">&lt;m0&gt; &amp; &#x27;x&#x27; &quot;y&quot;</code></td>',
                  '&lt;m1&gt; &amp; &#x27;x&#x27; &quot;y&quot;</code> <code title="',
                  '<code title="Amazon Bedrock">'):
        assert shown in pages, shown


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kolkata"])
def test_a_superuser_sees_every_team_and_filters_by_one(client, django_user_model, rows, zone):
    """Every team's rows, the team filter bar, and `?team=` with the other filters, as the templates gave them."""
    client.force_login(django_user_model.objects.create_superuser("root", password="pw-root-123456"))
    connections = Connection.objects.order_by("name").select_related("team").prefetch_related(each_endpoint_once())
    blue = "blue & <green>"
    cases = [("/settings/connections/", "connections/reference/connection_list.html", "connections", connections),
             ("/settings/connections/?team=blue+%26+%3Cgreen%3E", "connections/reference/connection_list.html",
              "connections", connections.of_team(blue)),
             ("/settings/connections/?team=blue+%26+%3Cgreen%3E&environment=staging", "connections/reference/"
              "connection_list.html", "connections", connections.of_team(blue).filter(environment="staging")),
             ("/settings/endpoints/?page=2", "endpoints/reference/endpoint_list.html", "endpoints",
              ENDPOINTS_AS_THE_TEMPLATE_READ_THEM),
             ("/settings/endpoints/?team=blue+%26+%3Cgreen%3E", "endpoints/reference/endpoint_list.html", "endpoints",
              ENDPOINTS_AS_THE_TEMPLATE_READ_THEM.of_team(blue))]
    for path, reference, name, instances in cases:
        with timezone.override(zone):
            response = client.get(path)
            expected = reference_page(response, reference, name, instances)
        page = response.content.decode()
        assert without_csrf_masks(page) == without_csrf_masks(expected), path
        assert f"Filter {name} by team" in page
        assert '<span class="badge team-badge" title="Team">blue &amp; &lt;green&gt;</span>' in page, path
        if "team=" in path:
            assert '<span class="badge team-badge" title="Team">default</span>' not in page, path


def test_the_times_are_the_templates_in_every_zone(rows):
    from core.ui import time_html

    template = engines["django"].from_string('{% include "settings/_time.html" %}')
    values = [None, AMBIGUOUS_IN_NEW_YORK, AMBIGUOUS_IN_NEW_YORK + timedelta(hours=1),
              datetime(2026, 3, 8, 7, 0, tzinfo=dt_timezone.utc), datetime(12, 1, 2, 3, 4, 5, tzinfo=dt_timezone.utc)]
    for zone in ZONES + ["Europe/Paris", "Australia/Lord_Howe"]:
        with timezone.override(zone):
            for value in values:
                assert time_html(value) == template.render({"value": value}), (zone, value)


# --- APIs -----------------------------------------------------------------------------------------------------


def serializer_page(serializer_class, queryset, response, request_path: str) -> bytes:
    """The paginated body the serializer gives for the response's rows, rendered as the API renders it."""
    body = response.json()
    names = [item["name"] for item in body["results"]]
    instances = {instance.name: instance for instance in queryset.filter(name__in=names)}
    request = APIRequestFactory().get(request_path)
    data = serializer_class([instances[name] for name in names], many=True, context={"request": request}).data
    return JSONRenderer().render({"count": body["count"], "next": body["next"], "previous": body["previous"],
                                  "results": data})


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("query", ["", "?page=2", "?page_size=500", "?provider=openai&ordering=-updated_at",
                                   "?ordering=updated_at&page_size=7&page=3", "?environment=staging&page_size=500",
                                   "?rotation=overdue&page_size=500", "?rotation=due_soon", "?rotation=no_key",
                                   "?team=blue+%26+%3Cgreen%3E&page_size=500"])
def test_the_connections_list_is_what_the_serializer_gave(api, rows, zone, query):
    queryset = (Connection.objects.select_related("created_by", "updated_by", "team")
                .prefetch_related(each_endpoint_once()))
    with timezone.override(zone):
        response = api.get("/api/v1/connections/" + query)
        assert response.status_code == 200
        assert response.content == serializer_page(ConnectionSerializer, queryset, response, query)
    assert PLANTED_KEY not in response.content.decode()
    everything = api.get("/api/v1/connections/?page_size=500").json()["results"]
    assert {"api_key": "cannot be decrypted"} in [item["secrets"] for item in everything]
    assert {"ok", "due_soon", "overdue", "no_key"} <= {item["rotation_status"] for item in everything}


def captured_sql(api, path: str, settings) -> list[str]:
    """The statements of one request for `path` (after a first, which plans the list), as sent."""
    settings.DATABASE_PREPARED_STATEMENTS = False  # a prepared statement's text is not captured
    api.get(path)
    with CaptureQueriesContext(connection) as captured:
        assert api.get(path).status_code == 200
    return [query["sql"] for query in captured]


@pytest.mark.parametrize("path", ["/api/v1/connections/", "/api/v1/endpoints/"])
def test_on_postgresql_a_page_reads_its_related_lists_in_its_own_statement(api, rows, path, settings):
    """A round trip less: the connections' endpoint names as an array, the endpoints' destinations as JSON."""
    if not on_postgres():
        pytest.skip("SQLite reads each related list by a statement of its own")
    statements = captured_sql(api, path, settings)
    pages = [sql for sql in statements if "LIMIT 50" in sql]
    assert len(pages) == 1 and "ARRAY(SELECT" in pages[0]
    assert [sql for sql in statements if "endpoints_destination" in sql] == pages
    # What the identity tests compare includes what JSON carries as text (a time) and empty lists.
    results = api.get(path).json()["results"]
    if "endpoints" in path:
        assert any(destination["cooling_until"] for item in results for destination in item["destinations"])
    else:
        assert any(not item["endpoints"] for item in results) and any(item["endpoints"] for item in results)


@pytest.mark.parametrize("query", ["", "?provider=openai"])
def test_a_connections_endpoint_names_are_read_by_key_not_by_joining_the_endpoints(api, rows, query, settings):
    """The names of a page of 50 come from the destinations, each by its endpoint's key: PostgreSQL answered the
    join by hashing the whole endpoints table. (PostgreSQL reads an unfiltered page's names with the page.)"""
    if on_postgres() and not query:
        pytest.skip("PostgreSQL reads an unfiltered page's names in the page's own statement")
    names = [sql for sql in captured_sql(api, "/api/v1/connections/" + query, settings) if '"endpoints_endpoint"' in sql]
    assert len(names) == 1
    assert "JOIN" not in names[0] and names[0].count('FROM "endpoints_destination"') == 1


def test_a_long_page_of_connections_joins_its_endpoints_names_and_lists_them_alike(api, rows, settings):
    """For hundreds of rows the join is the cheaper plan: taken past 64 rows, with the same JSON."""
    team = Team.objects.default()
    added = Connection.objects.bulk_create(
        Connection(name=f"d-{number:03d}", provider="openai", auth_method="api_key", team=team,
                   secrets={"api_key": f"sk-added-{number:03d}-abcdefghijklmnop"}) for number in range(70))
    endpoints = list(Endpoint.objects.order_by("name")[:20])
    Destination.objects.bulk_create(Destination(endpoint=endpoint, connection=added[number], model="m",
                                                role=Destination.Role.FALLBACK, position=9)
                                    for number, endpoint in enumerate(endpoints))
    path = "/api/v1/connections/?provider=openai&page_size=500"  # filtered: its names by a statement of their own
    names = [sql for sql in captured_sql(api, path, settings) if '"endpoints_endpoint"' in sql]
    assert len(names) == 1 and "JOIN" in names[0] and "LIMIT" not in names[0]
    queryset = (Connection.objects.select_related("created_by", "updated_by", "team")
                .prefetch_related(each_endpoint_once()))
    response = api.get(path)
    assert response.json()["count"] > 64
    assert response.content == serializer_page(ConnectionSerializer, queryset, response, "?provider=openai&page_size=500")
    assert {"d-000": [endpoints[0].name]}.items() <= {item["name"]: item["endpoints"]
                                                      for item in response.json()["results"]}.items()


@pytest.mark.parametrize("query,joined", [("?team=default", False), ("?team=default&page_size=500", True)])
def test_destinations_read_their_connections_columns_by_key_on_a_short_page(api, rows, query, joined, settings):
    """A page of 50 endpoints reads each destination's connection (name, provider, environment) by its key:
    PostgreSQL answered the join by hashing the whole connections table. 130 rows join, the cheaper plan there.
    (Filtered, so that PostgreSQL too reads the destinations by a statement of their own.)"""
    destinations = [sql for sql in captured_sql(api, "/api/v1/endpoints/" + query, settings)
                    if sql.count('FROM "endpoints_destination"') and '"endpoints_destination"."endpoint_id" IN' in sql]
    assert len(destinations) == 1
    assert (len(api.get("/api/v1/endpoints/" + query).json()["results"]) > 64) is joined
    assert ('JOIN "connections_connection"' in destinations[0]) is joined


@pytest.mark.parametrize("zone", ZONES)
@pytest.mark.parametrize("query", ["", "?page=3", "?page_size=500", "?enabled=false&task=chat",
                                   "?connection=c-001&ordering=-updated_at", "?provider=bedrock",
                                   "?team=blue+%26+%3Cgreen%3E&page_size=500"])
def test_the_endpoints_list_is_what_the_serializer_gave(api, rows, zone, query):
    queryset = Endpoint.objects.prefetch_related(Prefetch(
        "destinations", queryset=Destination.objects.select_related("connection").order_by("position"),
    ))
    with timezone.override(zone):
        response = api.get("/api/v1/endpoints/" + query)
        assert response.status_code == 200
        assert response.content == serializer_page(EndpointSerializer, queryset, response, query)
    listed = response.json()["results"]
    assert listed and all(item["connection"] == item["destinations"][0]["connection"] for item in listed)
    everything = api.get("/api/v1/endpoints/?page_size=500").json()["results"]
    assert {len(item["destinations"]) for item in everything} == {1, 2, 3, 4}
    assert any(item["destinations"][0]["cooling_until"] for item in everything)
    assert ["timeout", "rate_limited", "credentials_refused"] in [item["fallback_on"] for item in everything]


@pytest.mark.parametrize("path,queries", [("/api/v1/connections/", 5), ("/api/v1/endpoints/", 5),
                                          ("/api/v1/connections/?provider=openai&", 6),
                                          ("/api/v1/endpoints/?task=chat&", 6)])
def test_a_list_costs_the_same_queries_at_any_page_size(api, rows, path, queries, django_assert_num_queries):
    """The token and its permissions, the page with its count, then one query for the related list, whatever
    the number of rows; a filtered list counts its rows in a query of its own."""
    folds = on_postgres() and not path.endswith("&")  # a short unfiltered page reads its related list with it
    path += "" if path.endswith("&") else "?"
    total = api.get(path).json()["count"]  # the first request of a process plans the list
    for size in (1, 7, 500):
        with django_assert_num_queries(queries - (folds and size <= 64)):
            assert len(api.get(f"{path}page_size={size}").json()["results"]) == min(size, total)


def test_a_filter_the_request_names_still_refuses_a_bad_value(api, rows):
    for path in ("/api/v1/connections/?provider=nope", "/api/v1/endpoints/?task=nope&page_size=500"):
        assert api.get(path).status_code == 400, path


def test_the_schema_still_describes_each_listed_field(api, rows):
    """The lists answer what the OpenAPI schema (still built from the serializers) says they answer."""
    schema = SchemaGenerator().get_schema(request=None, public=True)
    components = schema["components"]["schemas"]
    for path, component in (("/api/v1/connections/", "Connection"), ("/api/v1/endpoints/", "Endpoint")):
        operation = schema["paths"][path]["get"]
        assert {"page", "page_size", "ordering", "provider"} <= {parameter["name"] for parameter in operation["parameters"]}
        listed = operation["responses"]["200"]["content"]["application/json"]["schema"]
        assert listed == {"$ref": f"#/components/schemas/Paginated{component}List"}
        page = components[f"Paginated{component}List"]["properties"]["results"]
        assert page["items"] == {"$ref": f"#/components/schemas/{component}"}
        properties = components[component]["properties"]
        for item in api.get(path + "?page_size=500").json()["results"]:
            assert list(item) == [name for name, spec in properties.items() if not spec.get("writeOnly")]
            for name, value in item.items():
                kind = properties[name].get("type")
                if value is None:
                    assert properties[name].get("nullable"), name
                elif kind:
                    python = {"string": str, "boolean": bool, "object": dict, "array": list, "integer": int}[kind]
                    assert isinstance(value, python), (name, value)


def test_a_description_is_cut_as_the_truncator_cut_it():
    from django.utils.text import Truncator

    from connections.views import truncated

    for text in ["", "plain", "x" * 80, "x" * 81, "e\u0301" * 50, "e\u0301" * 81, "\u0958" * 45, "\u0958" * 80,
                 "a" * 79 + "\u0958", "<b>" * 30]:
        assert truncated(text, 80) == Truncator(text).chars(80), text


@pytest.mark.parametrize("path", ["/api/v1/connections/", "/api/v1/endpoints/"])
def test_a_superusers_list_is_what_the_serializer_gave(rows, django_user_model, path):
    """Every team's rows, read by the statement compiled for superusers."""
    root = django_user_model.objects.create_superuser("root", password="pw-root-123456")
    client = bearer_client(root)
    serializer, queryset = ((ConnectionSerializer, Connection.objects.select_related("created_by", "updated_by", "team")
                             .prefetch_related(each_endpoint_once())) if "connections" in path else
                            (EndpointSerializer, Endpoint.objects.prefetch_related(Prefetch(
                                "destinations", queryset=Destination.objects.select_related("connection")
                                .order_by("position")))))
    for query in ("", "?page=2&page_size=9", "?ordering=-updated_at&page_size=500"):
        response = client.get(path + query)
        assert response.status_code == 200
        assert response.content == serializer_page(serializer, queryset, response, query)
    assert response.json()["count"] == queryset.count()


@pytest.mark.parametrize("path", ["/api/v1/connections/", "/api/v1/endpoints/", "/settings/connections/",
                                  "/settings/endpoints/"])
def test_a_page_past_the_last_one_is_not_found_as_before(api, client, django_user_model, rows, path):
    if path.startswith("/settings/"):
        login_with_perms(client, django_user_model, "connections.view_connection", "endpoints.view_endpoint")
        Team.objects.default().members.add(django_user_model.objects.get(username="limited"))
        api = client
    last = api.get(path + "?page=last")
    assert last.status_code == 200
    number = last.context_data["page_obj"].number if path.startswith("/settings/") else None
    if number is not None:
        assert api.get(f"{path}?page={number}").content.decode().count("<tr>") == last.content.decode().count("<tr>")
    for page in ("999", "0", "-1", "x"):
        missing = api.get(f"{path}?page={page}")
        assert missing.status_code == 404, page
    if path.startswith("/api/"):
        assert api.get(path + "?page=999").json() == {"detail": "Invalid page."}


def test_the_provider_catalogue_is_what_its_serializer_gave(api):
    from connections.api.serializers import ProviderSerializer
    from providers.catalogue import PROVIDER_LIST

    for _ in range(2):  # represented once, then served again
        response = api.get("/api/v1/providers/")
        assert response.content == JSONRenderer().render(ProviderSerializer(PROVIDER_LIST, many=True).data)


def test_orderings_without_end_keep_few_statements(api, rows):
    """A request names its ordering: past a bound, lists are built by the ORM rather than compiled and kept."""
    from itertools import product

    from connections.api.views import ConnectionViewSet

    fields = ("name", "-name", "updated_at", "-updated_at")
    expected = [c["name"] for c in api.get("/api/v1/connections/?page_size=500").json()["results"]]
    for ordering in [*product(fields, repeat=2), *product(fields, repeat=3)][:90]:
        names = [c["name"] for c in api.get("/api/v1/connections/", {"ordering": ",".join(ordering),
                                                                     "page_size": 500}).json()["results"]]
        assert sorted(names) == sorted(expected)
    assert len(ConnectionViewSet().list_pages(500)._statements) <= 64
