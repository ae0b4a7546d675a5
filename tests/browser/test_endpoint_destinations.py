"""The endpoint form's destinations in Chromium: adding rows, the live weight total, the server's error."""

import re

from playwright.sync_api import ConsoleMessage, Page, expect

from endpoints.models import Endpoint
from tests.browser.conftest import log_in


def test_a_split_with_a_fallback_is_built_row_by_row_with_a_live_total(page: Page, live_server, admin_user,
                                                                       make_connection, artifacts):
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    for name in ("openai-prod", "openai-team-b"):
        make_connection(name)
    make_connection("anthropic-backup", provider="anthropic")
    log_in(page, live_server.url)
    page.get_by_role("link", name="Endpoints", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()

    total = page.locator("#weight-total")
    rows = page.locator("#destination-rows tr")
    page.get_by_label("Name").fill("chat")
    rows.nth(0).get_by_label("Connection").select_option(label="openai-prod (OpenAI)")
    rows.nth(0).get_by_label("Model").fill("gpt-4o-mini")
    rows.nth(0).get_by_label("Weight").fill("70")
    expect(total).to_contain_text("70 / 100")
    expect(total).to_have_class(re.compile("is-incomplete"))

    page.get_by_role("button", name="Add a destination").click()
    rows.nth(1).get_by_label("Connection").select_option(label="openai-team-b (OpenAI)")
    rows.nth(1).get_by_label("Model").fill("gpt-4o-mini")
    rows.nth(1).get_by_label("Weight").fill("20")
    expect(total).to_contain_text("90 / 100")
    page.screenshot(path=artifacts / "endpoint-weights-red.png", full_page=True)
    rows.nth(1).get_by_label("Weight").fill("30")
    expect(total).to_contain_text("100 / 100")
    expect(total).to_have_class(re.compile("is-complete"))

    page.get_by_role("button", name="Add a destination").click()
    rows.nth(2).get_by_label("Connection").select_option(label="anthropic-backup (Anthropic)")
    rows.nth(2).get_by_label("Model").fill("claude-3-5-haiku-latest")
    rows.nth(2).get_by_label("Role").select_option(label="Fallback")
    expect(rows.nth(2).get_by_label("Weight")).to_be_disabled()
    expect(total).to_contain_text("100 / 100")
    for kind in ("Connection errors", "Timeouts", "Rate limited (429)", "Provider errors (5xx)"):
        expect(page.get_by_label(kind)).to_be_checked()  # the defaults
    expect(page.get_by_label("Credentials refused (401, 403)")).not_to_be_checked()
    page.screenshot(path=artifacts / "endpoint-weights-green.png", full_page=True)
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_text("Endpoint “chat” created.")).to_be_visible()
    expect(page.get_by_text("openai-prod 70% · openai-team-b 30%, then anthropic-backup")).to_be_visible()
    page.screenshot(path=artifacts / "endpoint-list-split.png", full_page=True)
    assert [(d.connection.name, d.weight) for d in Endpoint.objects.get().destinations.order_by("position")] == [
        ("openai-prod", 70), ("openai-team-b", 30), ("anthropic-backup", None)]
    assert sorted(Endpoint.objects.get().fallback_on) == ["connection_error", "rate_limited", "server_error", "timeout"]

    # An error the server finds: the weights no longer add up.
    page.get_by_role("link", name="Edit").click()
    rows.nth(0).get_by_label("Weight").fill("50")
    expect(total).to_have_class(re.compile("is-incomplete"))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("The primary destinations' weights add up to 80; they must add up to 100.")).to_be_visible()
    page.screenshot(path=artifacts / "endpoint-weights-error.png", full_page=True)
    assert violations == []
