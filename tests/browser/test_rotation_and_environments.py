"""The connections list in a browser: key age badges, environment badges and the filters, readable at 1280×800."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from connections.models import Connection
from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)


def row(page: Page, name: str):
    return page.locator("tbody tr").filter(has=page.get_by_role("rowheader", name=re.compile(f"^{name} ")))


def test_overdue_keys_are_badged_and_found_with_the_filter(page: Page, live_server, admin_user, make_connection,
                                                           artifacts):
    make_connection("openai-prod", description="Production traffic for the support bot")
    make_connection("openai-dev", environment="development")
    make_connection("anthropic-staging", provider="anthropic", environment="staging", key_max_age_days=30)
    for name, days in (("openai-prod", 120), ("anthropic-staging", 20)):
        connection = Connection.objects.get(name=name)
        connection.secrets_updated_at = timezone.now() - timedelta(days=days)
        connection.save(update_fields=["secrets_updated_at"])

    log_in(page, live_server.url)
    expect(row(page, "openai-prod").locator(".badge", has_text="Overdue")).to_be_visible()
    expect(row(page, "anthropic-staging").locator(".badge", has_text="Due soon")).to_be_visible()
    expect(row(page, "openai-dev").locator(".badge", has_text="Development")).to_be_visible()
    page.screenshot(path=artifacts / "connections-rotation-list.png", full_page=True)
    # Every column fits the 1280-pixel window: the table does not scroll sideways.
    wrap = page.locator(".table-wrap")
    assert wrap.evaluate("element => element.scrollWidth <= element.clientWidth")

    page.get_by_role("navigation", name="Filter connections by key rotation").get_by_role("link", name="Overdue").click()

    expect(page.locator("tbody tr")).to_have_count(1)
    expect(row(page, "openai-prod")).to_be_visible()
    page.get_by_role("navigation", name="Filter connections by environment").get_by_role("link", name="Staging").click()
    expect(page.get_by_text("No connection matches this filter.")).to_be_visible()
    expect(page).to_have_url(re.compile(r"\?(rotation=overdue&environment=staging|environment=staging&rotation=overdue)$"))
