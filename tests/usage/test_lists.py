"""The connections and endpoints lists show each row's calls and errors of the last 24 hours and its last use."""

import re
from datetime import UTC, datetime, timedelta

from usage.calls import Call
from usage.services import write_calls

NOW = datetime.now(UTC)


def calls(hours_ago: float, count: int, **fields) -> list[Call]:
    at = (NOW - timedelta(hours=hours_ago)).timestamp()
    return [Call(at=at, started=0.0, **{"status": 200, "latency_ms": 100, **fields}) for _ in range(count)]


def row_of(page: str, name: str) -> str:
    # The row's name cell: the name, then a tag (the connections list follows it with the environment badge).
    return re.split(rf">{re.escape(name)} ?<", page, maxsplit=1)[1].split("</tr>", 1)[0]


def test_the_lists_count_each_rows_calls_and_errors_of_the_last_24_hours(admin_client, make_connection,
                                                                        make_endpoint, django_assert_num_queries):
    busy = make_endpoint("busy", make_connection("openai-prod"))
    idle = make_endpoint("idle", make_connection("openai-idle"))
    where = {"endpoint_id": busy.pk, "connection_id": busy.destinations.get().connection_id}
    write_calls(calls(0, 12, **where) + calls(3, 2, **where, status=429, error="upstream_rate_limited")
                + calls(30, 50, **where))  # 30 hours ago: outside the 24 hours
    endpoints = admin_client.get("/settings/endpoints/").content.decode()
    assert '<th scope="col" class="number">Calls (24 h)</th>' in endpoints
    assert f'?endpoint={busy.pk}" aria-label="Usage of busy">14</a>' in row_of(endpoints, "busy")
    assert '<span class="badge badge-danger">2</span>' in row_of(endpoints, "busy")
    assert "<time" in row_of(endpoints, "busy") and "never" in row_of(endpoints, "idle")
    connections = admin_client.get("/settings/connections/").content.decode()
    assert f'?connection={busy.destinations.get().connection_id}" aria-label="Usage of openai-prod">14</a>' in row_of(
        connections, "openai-prod")
    assert ">0</a>" in row_of(connections, "openai-idle") and idle.destinations.get().connection_id
