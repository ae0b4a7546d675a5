"""`/api/v1/usage/`: hours or days of calls, filtered by span, endpoint, connection and token; JSON or CSV."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from tokens.models import ApiToken
from usage.calls import Call
from usage.services import write_calls

NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


def calls_at(hours_ago: float, count: int = 1, **fields) -> list[Call]:
    at = (NOW - timedelta(hours=hours_ago)).timestamp()
    return [Call(at=at, started=0.0, **{"status": 200, "latency_ms": 120, **fields}) for _ in range(count)]


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user("analyst", password="pw-analyst-1234")
    user.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def traffic(make_connection, make_endpoint, admin_user):
    """Two endpoints on two connections, two tokens: calls over the last three days."""
    first = make_endpoint("chat", make_connection("openai-prod"))
    second = make_endpoint("other", make_connection("openai-backup"), model="gpt-4o")
    token_a, _ = ApiToken.issue(user=admin_user)
    token_b, _ = ApiToken.issue(user=admin_user)
    a = {"endpoint_id": first.pk, "connection_id": first.destinations.get().connection_id, "token_id": token_a.pk,
         "model": "gpt-4o-mini", "provider": "openai", "prompt_tokens": 10, "completion_tokens": 5}
    b = {"endpoint_id": second.pk, "connection_id": second.destinations.get().connection_id, "token_id": token_b.pk,
         "model": "gpt-4o", "provider": "openai", "prompt_tokens": 100, "completion_tokens": 50}
    write_calls(calls_at(1, 3, **a) + calls_at(1, 1, **a, status=502, error="upstream_error")
                + calls_at(2, 2, **b) + calls_at(30, 4, **a) + calls_at(60, 5, **b))
    return {"first": first, "second": second, "token_a": token_a, "token_b": token_b}


def get(client, **params):
    return client.get("/api/v1/usage/", params)


def test_the_last_24_hours_by_hour_with_totals(viewer, traffic):
    response = get(viewer)
    assert response.status_code == 200
    document = response.json()
    assert document["group"] == "hour" and len(document["results"]) == 25  # the current hour and 24 before
    totals = document["totals"]
    assert (totals["calls"], totals["errors"], totals["prompt_tokens"], totals["completion_tokens"]) == (
        6, 1, 4 * 10 + 2 * 100, 4 * 5 + 2 * 50)
    assert totals["total_tokens"] == totals["prompt_tokens"] + totals["completion_tokens"]
    assert 100 <= totals["latency_p50_ms"] <= 250
    busy = [row for row in document["results"] if row["calls"]]
    assert [row["calls"] for row in busy] == [2, 4]  # two hours ago, then one hour ago


def test_filters_by_endpoint_connection_and_token(viewer, traffic):
    since = (NOW - timedelta(days=4)).isoformat()
    by_endpoint = get(viewer, since=since, endpoint="chat", group="day").json()["totals"]["calls"]
    by_connection = get(viewer, since=since, connection="openai-backup", group="day").json()["totals"]["calls"]
    by_token = get(viewer, since=since, token=traffic["token_b"].pk, group="day").json()["totals"]["calls"]
    assert (by_endpoint, by_connection, by_token) == (8, 7, 7)


def test_since_and_until_bound_the_span_and_days_group_it(viewer, traffic):
    since, until = NOW - timedelta(days=3), NOW - timedelta(hours=12)
    document = get(viewer, since=since.isoformat(), until=until.isoformat()).json()
    assert document["totals"]["calls"] == 9  # 30 and 60 hours ago
    assert sum(row["calls"] for row in document["results"]) == 9
    by_day = get(viewer, since=(NOW - timedelta(days=4)).isoformat(), group="day").json()
    assert all(row["start"].endswith("T00:00:00Z") for row in by_day["results"]) and len(by_day["results"]) == 5
    assert by_day["totals"]["calls"] == 15 and by_day["since"].endswith("T00:00:00Z")


def test_by_adds_the_top_rows_with_current_names(viewer, traffic, admin_user):
    traffic["first"].name = "renamed"
    traffic["first"].save()
    top = get(viewer, since=(NOW - timedelta(days=4)).isoformat(), group="day", by="endpoint").json()["top"]
    assert [(row["name"], row["calls"]) for row in top] == [("renamed", 8), ("other", 7)]
    traffic["second"].delete()  # its usage stays, named by its id (a superuser's to see: its team is gone with it)
    superuser = APIClient()
    superuser.force_authenticate(admin_user)
    top = get(superuser, since=(NOW - timedelta(days=4)).isoformat(), group="day", by="endpoint").json()["top"]
    assert top[1]["name"] == f"#{top[1]['key']} (deleted)"
    top = get(viewer, since=(NOW - timedelta(days=4)).isoformat(), group="day", by="endpoint").json()["top"]
    assert [row["name"] for row in top] == ["renamed"]


def test_csv_has_a_header_and_one_line_per_period(viewer, traffic):
    response = get(viewer, format="csv", group="day", since=(NOW - timedelta(days=4)).isoformat())
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["start", "calls", "errors", "prompt_tokens", "completion_tokens", "total_tokens", "cost",
                       "latency_avg_ms", "latency_p50_ms", "latency_p95_ms"]
    assert sum(int(row[1]) for row in rows[1:]) == 15


def test_csv_never_starts_a_cell_with_a_formula(admin_user):
    superuser = APIClient()  # calls that named no endpoint are a superuser's to see
    superuser.force_authenticate(admin_user)
    write_calls(calls_at(1, model="=HYPERLINK(\"http://x\")"))
    rows = list(csv.reader(io.StringIO(get(superuser, format="csv", by="model").content.decode())))
    assert rows[1][1].startswith("'=")


@pytest.mark.parametrize("params, field", [
    ({"endpoint": "missing"}, "endpoint"),
    ({"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, "since"),
    ({"since": "2020-01-01T00:00:00Z", "group": "hour"}, "since"),
    ({"group": "minute"}, "group"),
    ({"token": "abc"}, "token"),
    ({"format": "xml"}, "format"),
    ({"format": "csv", "endpoint": "missing"}, "endpoint"),  # errors are JSON whatever the format
])
def test_bad_filters_are_a_400_naming_the_field(viewer, db, params, field):
    response = get(viewer, **params)
    assert response.status_code == 400 and field in response.json()


def test_it_needs_the_usage_permission(django_user_model, db):
    client = APIClient()
    assert get(client).status_code == 401
    refused = get(client, format="csv")
    assert refused.status_code == 401 and refused["Content-Type"] == "application/json"
    someone = django_user_model.objects.create_user("someone", password="pw-someone-1234")
    client.force_authenticate(someone)
    assert get(client).status_code == 403
    client.force_authenticate(django_user_model.objects.create_superuser("root", password="pw-root-123456"))
    assert get(client).status_code == 200


def test_a_bearer_token_reads_it(admin_user, traffic):
    _, secret = ApiToken.issue(user=admin_user)
    response = APIClient().get("/api/v1/usage/", HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert response.status_code == 200 and response.json()["totals"]["calls"] == 6


def test_the_query_count_does_not_grow_with_endpoints_or_tokens(viewer, traffic, make_endpoint, django_user_model,
                                                                 django_assert_num_queries):
    for position in range(20):
        endpoint = make_endpoint(f"more-{position}", traffic["first"].destinations.get().connection)
        write_calls(calls_at(3, endpoint_id=endpoint.pk, connection_id=endpoint.destinations.get().connection_id, token_id=position + 100))
    for by in ("endpoint", "token"):
        viewer.force_authenticate(django_user_model.objects.get(username="analyst"))  # no cached permissions
        # the user's permissions (2), the series (with its totals), the destinations (every top), the top's names
        with django_assert_num_queries(5):
            assert get(viewer, by=by, limit=50).status_code == 200
