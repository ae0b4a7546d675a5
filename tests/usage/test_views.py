"""The Usage tab: totals, charts drawn as SVG, top tables, filters; for users who may view usage."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from tokens.models import ApiToken
from usage.calls import Call
from usage.services import write_calls

NOW = datetime.now(UTC)


def calls(hours_ago: float, count: int, **fields) -> list[Call]:
    at = (NOW - timedelta(hours=hours_ago)).timestamp()
    return [Call(at=at, started=0.0, **{"status": 200, "latency_ms": 300, **fields}) for _ in range(count)]


@pytest.fixture
def viewer(django_user_model):
    user = django_user_model.objects.create_user("analyst", password="pw-analyst-1234")
    user.user_permissions.add(Permission.objects.get(codename="view_usagerecord"))
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def traffic(make_connection, make_endpoint, admin_user):
    connection = make_connection("openai-prod")
    endpoints = [make_endpoint(f"chat-{n}", connection) for n in range(3)]
    tokens = [ApiToken.issue(user=admin_user)[0] for _ in range(3)]
    rows = []
    for n, (endpoint, token) in enumerate(zip(endpoints, tokens)):
        same = {"endpoint_id": endpoint.pk, "connection_id": connection.pk, "token_id": token.pk,
                "model": "gpt-4o-mini", "provider": "openai", "prompt_tokens": 100, "completion_tokens": 20}
        rows += calls(1 + n, 10 * (n + 1), **same) + calls(2, n, **same, status=502, error="upstream_error")
        rows += calls(24 * 5, 7, **same)  # in the last 7 days, not the last 24 hours
    write_calls(rows)
    return {"connection": connection, "endpoints": endpoints, "tokens": tokens}


def test_the_tab_shows_totals_charts_and_top_tables(viewer, traffic):
    response = viewer.get("/settings/usage/")
    assert response.status_code == 200
    page = response.content.decode()
    assert '<dd>63</dd>' in page  # 10 + 20 + 30 calls and 0 + 1 + 2 errors in the last 24 hours
    assert page.count('<svg class="chart"') == 4
    assert "Requests and errors" in page and "Latency p50 and p95" in page
    top = page.split("Top endpoints")[1].split("</table>")[0]
    assert top.index(">chat-2<") < top.index(">chat-1<") < top.index(">chat-0<")  # most calls first
    assert '<a class="tab" href="/settings/usage/" aria-current="page">Usage</a>' in page


def test_periods_and_filters_narrow_what_is_shown(viewer, traffic):
    week = viewer.get("/settings/usage/", {"period": "7d"}).content.decode()
    assert "<dd>84</dd>" in week  # 63 + 3 × 7
    one = traffic["endpoints"][0]
    only = viewer.get("/settings/usage/", {"period": "7d", "endpoint": one.pk}).content.decode()
    assert "<dd>17</dd>" in only and ">chat-1<" not in only.split("Top endpoints")[1].split("</table>")[0]
    token = traffic["tokens"][2]
    assert "<dd>32</dd>" in viewer.get("/settings/usage/", {"token": token.pk}).content.decode()
    # an id that is not offered is ignored rather than an error
    assert "<dd>63</dd>" in viewer.get("/settings/usage/", {"endpoint": "999999"}).content.decode()


def test_the_csv_link_asks_the_api_for_what_the_page_shows(viewer, traffic):
    one = traffic["endpoints"][1]
    page = viewer.get("/settings/usage/", {"endpoint": one.pk}).content.decode()
    link = page.split('href="/api/v1/usage/?')[1].split('"')[0].replace("&amp;", "&")
    response = viewer.get(f"/api/v1/usage/?{link}")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    assert sum(int(line.split(",")[1]) for line in response.content.decode().splitlines()[1:]) == 21


def test_the_query_count_does_not_grow_with_endpoints_tokens_or_hours(viewer, traffic, make_endpoint,
                                                                      django_assert_num_queries, admin_user):
    def count() -> int:
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        with CaptureQueriesContext(connection) as context:
            assert viewer.get("/settings/usage/", {"period": "30d"}).status_code == 200
        return len(context.captured_queries)

    before = count()
    for n in range(15):
        endpoint = make_endpoint(f"more-{n}", traffic["connection"])
        token, _ = ApiToken.issue(user=admin_user)
        write_calls(calls(n * 20, 2, endpoint_id=endpoint.pk, connection_id=endpoint.destinations.get().connection_id,
                          token_id=token.pk, model=f"model-{n}"))
    # session, user, permissions (2); 3 filter choices, the series (with its totals), the destinations (all
    # four top tables), the names in 3 of them
    assert before == 12
    with django_assert_num_queries(12):
        assert viewer.get("/settings/usage/", {"period": "30d"}).status_code == 200


def test_it_needs_the_usage_permission(client, django_user_model, db):
    assert client.get("/settings/usage/").status_code == 302  # to the login page
    client.force_login(django_user_model.objects.create_user("someone", password="pw-someone-1234"))
    assert client.get("/settings/usage/").status_code == 403
