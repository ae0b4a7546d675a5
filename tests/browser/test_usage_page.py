"""The Usage tab in Chromium: charts drawn, filters applied, no CSP violation."""

from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.conftest import log_in
from tokens.models import ApiToken
from usage.calls import Call
from usage.models import Price
from usage.services import write_calls

pytestmark = pytest.mark.django_db(transaction=True)


def seed(make_connection, make_endpoint, admin_user) -> None:
    """A day of traffic on two endpoints: more in working hours, some errors, slower calls at times."""
    connection = make_connection("openai-prod")
    chat, embed = make_endpoint("chat", connection), make_endpoint("embed", connection, model="text-embedding-3-small",
                                                                   task="embeddings")
    Price.objects.create(connection=connection, model="gpt-4o-mini", input_per_million=0.15, output_per_million=0.6)
    token, _ = ApiToken.issue(user=admin_user)
    now = datetime.now(UTC)
    rows = []
    for hours_ago in range(24):
        at = (now - timedelta(hours=hours_ago)).timestamp()
        busy = 20 + 15 * (hours_ago % 7)
        for n in range(busy):
            rows.append(Call(at=at, started=0.0, endpoint_id=chat.pk, connection_id=connection.pk, token_id=token.pk,
                             provider="openai", model="gpt-4o-mini", status=502 if n % 17 == 0 else 200,
                             error="upstream_error" if n % 17 == 0 else "", latency_ms=180 + (n * 37) % 900,
                             prompt_tokens=200 + n, completion_tokens=80))
        rows += [Call(at=at, started=0.0, endpoint_id=embed.pk, connection_id=connection.pk, token_id=token.pk,
                      provider="openai", model="text-embedding-3-small", status=200, latency_ms=60, prompt_tokens=30)
                 for _ in range(8)]
    write_calls(rows)


def test_the_usage_tab_draws_its_charts_and_filters(page: Page, live_server, admin_user, make_connection,
                                                    make_endpoint, artifacts):
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    seed(make_connection, make_endpoint, admin_user)
    log_in(page, live_server.url)
    page.get_by_role("link", name="Usage", exact=True).click()
    expect(page.get_by_role("heading", name="Usage", exact=True)).to_be_visible()
    charts = page.locator("svg.chart")
    expect(charts).to_have_count(4)
    first_chart = charts.first.bounding_box()
    assert first_chart["width"] > 300 and first_chart["height"] > 80
    assert page.locator("svg.chart rect.chart-error").count() > 0
    expect(page.get_by_role("rowheader", name="chat").first).to_be_visible()
    page.screenshot(path=artifacts / "usage-tab.png", full_page=True)

    page.get_by_label("Endpoint").select_option(label="embed")
    page.get_by_role("button", name="Show").click()
    expect(page.locator(".usage-totals dd").first).to_have_text("192")  # 8 calls an hour for 24 hours
    assert violations == []
