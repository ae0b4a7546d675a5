"""The pages still work under the Content-Security-Policy, and the browser reports no violation on any of them."""

import re

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from tests.browser.conftest import log_in

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def violations(page: Page) -> list[str]:
    """Every CSP violation Chromium reports on the console while the test runs."""
    found: list[str] = []

    def collect(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            found.append(f"{page.url}: {message.text}")

    page.on("console", collect)
    return found


def test_the_pages_work_under_the_policy_without_violations(page: Page, live_server, admin_user, make_connection,
                                                             violations, artifacts):
    make_connection("openai-prod")
    response = page.goto(f"{live_server.url}/accounts/login/")
    assert "script-src 'self'" in response.headers["content-security-policy"]

    # Login page, then the connections list.
    log_in(page, live_server.url)
    expect(page.get_by_role("rowheader", name="openai-prod")).to_be_visible()

    # Create form: swapping provider and method fetches the new fields (static/settings/connection-form.js).
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("Provider").select_option(label="OpenAI")
    page.get_by_label("Authentication method").select_option(label="Azure OpenAI (API key)")
    expect(page.get_by_label("Endpoint URL")).to_be_visible()
    page.get_by_label("Provider").select_option(label="Anthropic")
    expect(page.get_by_label("Endpoint URL")).to_have_count(0)
    expect(page.get_by_label("API key")).to_be_visible()

    # The other settings pages: Endpoints, Audit log, Tokens.
    page.get_by_role("link", name="Endpoints", exact=True).click()
    expect(page.get_by_role("heading", name="Endpoints", exact=True)).to_be_visible()
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log", exact=True)).to_be_visible()
    page.get_by_role("link", name="Tokens").click()
    expect(page.get_by_role("button", name="Create token")).to_be_visible()

    # Admin changelist (its action bar runs from static scripts) and add page.
    page.goto(f"{live_server.url}/admin/connections/connection/")
    expect(page.get_by_role("link", name="openai-prod")).to_be_visible()
    page.get_by_role("checkbox", name=re.compile("Select all", re.IGNORECASE)).check()
    expect(page.locator(".action-counter")).to_contain_text("1 of 1 selected")
    page.goto(f"{live_server.url}/admin/connections/connection/add/")
    expect(page.get_by_role("button", name="Save", exact=True)).to_be_visible()

    # API docs: Swagger UI loads its start-up script from a file, then renders the schema's operations.
    page.goto(f"{live_server.url}/api/v1/docs/")
    expect(page.get_by_role("heading", name=re.compile("LLM Connections API"))).to_be_visible()
    expect(page.locator(".opblock").first).to_be_visible()
    page.screenshot(path=artifacts / "api-docs-under-csp.png")

    assert violations == []


def test_the_policy_is_enforced(page: Page, live_server, violations):
    """The check above is not vacuous: an inline script is refused, and reported."""
    page.goto(f"{live_server.url}/accounts/login/")
    with page.expect_console_message(lambda message: "Content Security Policy" in message.text):
        page.evaluate("""() => {
            const script = document.createElement("script");
            script.textContent = "document.body.dataset.inline = 'ran'";
            document.head.appendChild(script);
        }""")

    expect(page.locator("body")).not_to_have_attribute("data-inline", "ran")
    assert any("script-src" in violation for violation in violations)
