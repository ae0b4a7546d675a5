"""The user guide (seed-llm-connections.txt), step by step, in a real browser; plus the form's field swapping."""

import re

import pytest
from playwright.sync_api import Browser, Page, expect

from audit.models import AuditEntry
from connections.models import Connection
from connections.secrets import mask_secret
from endpoints.models import Endpoint
from tests.browser.conftest import log_in
from tests.conftest import PLANTED_KEY

pytestmark = pytest.mark.django_db(transaction=True)

FIRST_KEY = "sk-azure-FIRST-key-000111222333-abcd"
ROTATED_KEY = "sk-azure-ROTATED-key-444555666777-wxyz"


def row(page: Page, name: str):
    return page.locator("tbody tr").filter(has=page.get_by_role("rowheader", name=re.compile(f"^{name}")))


def test_the_user_guide_end_to_end(page: Page, live_server, admin_user, make_connection, artifacts):
    make_connection("anthropic-dev", provider="anthropic", description="Prototyping, team A")
    log_in(page, live_server.url)
    expect(page).to_have_url(re.compile(r"/settings/connections/$"))
    expect(page.get_by_role("link", name="LLM Connections")).to_have_attribute("aria-current", "page")

    # Creating an LLM connection: Create, a unique name, the provider, the auth method, masked credentials,
    # the provider-specific fields.
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("Name").fill("my-openai-key")
    page.get_by_label("Provider").select_option(label="OpenAI")
    expect(page.get_by_label("Endpoint URL")).to_have_count(0)
    page.get_by_label("Authentication method").select_option(label="Azure OpenAI (API key)")
    expect(page.get_by_label("Endpoint URL")).to_be_visible()
    expect(page.get_by_label("API version")).to_be_visible()
    expect(page.get_by_label("API key")).to_have_attribute("type", "password")
    page.get_by_label("API key").fill(FIRST_KEY)
    page.get_by_label("Endpoint URL").fill("https://my-resource.openai.azure.com")
    page.get_by_label("API version").fill("2024-10-21")
    page.get_by_label("Description").fill("Production traffic")
    page.screenshot(path=artifacts / "connection-create-form.png", full_page=True)
    page.get_by_role("button", name="Create").click()

    expect(page.get_by_text("Connection “my-openai-key” created.")).to_be_visible()
    created = row(page, "my-openai-key")
    expect(created).to_contain_text("Azure OpenAI (API key)")
    expect(created).to_contain_text(mask_secret(FIRST_KEY))
    connection = Connection.objects.get(name="my-openai-key")
    assert connection.config["endpoint_url"] == "https://my-resource.openai.azure.com"

    # An endpoint that uses it.
    page.get_by_role("link", name="Endpoints", exact=True).click()
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("Name").fill("chat-main")
    page.get_by_label("Connection", exact=True).select_option(label="my-openai-key (OpenAI)")
    page.get_by_label("Model", exact=True).fill("gpt-4o-mini")
    page.get_by_label("Task").select_option(label="Chat")
    expect(page.get_by_label("Enabled")).to_be_checked()
    page.get_by_role("button", name="Create").click()
    expect(page.get_by_text("Endpoint “chat-main” created.")).to_be_visible()
    expect(row(page, "chat-main")).to_contain_text("my-openai-key")

    # The list shows the endpoints using each connection, last updated and created; credentials stay masked.
    page.get_by_role("link", name="LLM Connections").click()
    expect(row(page, "my-openai-key").get_by_role("link", name="chat-main")).to_be_visible()
    page.screenshot(path=artifacts / "connections-list.png", full_page=True)

    # Editing: Edit, update the API key, Save; the endpoint keeps using the connection.
    row(page, "my-openai-key").get_by_role("link", name="Edit").click()
    key_input = page.get_by_label("API key")
    expect(key_input).to_have_value("")
    expect(key_input).to_have_attribute("placeholder", mask_secret(FIRST_KEY))
    key_input.fill(ROTATED_KEY)
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("Credentials of “my-openai-key” updated")).to_be_visible()
    expect(row(page, "my-openai-key")).to_contain_text(mask_secret(ROTATED_KEY))
    expect(row(page, "my-openai-key").get_by_role("link", name="chat-main")).to_be_visible()
    assert Connection.objects.get(name="my-openai-key").get_secrets()["api_key"] == ROTATED_KEY
    assert Endpoint.objects.get(name="chat-main").destinations.get().connection_id == connection.pk

    # History shows the rotation (field names only).
    row(page, "my-openai-key").get_by_role("link", name="History").click()
    expect(page.locator("tbody tr").first).to_contain_text("Key rotated")
    page.get_by_role("link", name="LLM Connections").first.click()

    # Deleting: warned about the endpoint that depends on it, and refused.
    row(page, "my-openai-key").get_by_role("link", name="Delete").click()
    expect(page.get_by_text("This connection cannot be deleted")).to_be_visible()
    expect(page.get_by_role("alert").get_by_role("link", name="chat-main")).to_be_visible()
    expect(page.get_by_role("button", name="Delete")).to_have_count(0)

    # Delete the endpoint, then the connection.
    page.get_by_role("link", name="Endpoints", exact=True).click()
    row(page, "chat-main").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Endpoint “chat-main” deleted.")).to_be_visible()
    page.get_by_role("link", name="LLM Connections").click()
    row(page, "my-openai-key").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("Connection “my-openai-key” deleted.")).to_be_visible()
    expect(row(page, "my-openai-key")).to_have_count(0)
    assert not Connection.objects.filter(name="my-openai-key").exists()
    assert AuditEntry.objects.filter(subject_name="my-openai-key", action="deleted").exists()

    # The audit log keeps the deleted connection's history.
    page.get_by_role("link", name="Audit log").click()
    expect(page.locator("tbody tr").first).to_contain_text("Deleted")
    expect(page.locator("tbody tr").first).to_contain_text("my-openai-key")


def test_provider_swaps_keep_what_was_typed(page: Page, live_server, admin_user):
    log_in(page, live_server.url)
    page.get_by_role("link", name="Create", exact=True).click()
    page.get_by_label("Name").fill("gcp-main")
    page.get_by_label("Description").fill("Typed before any swap")

    # Keyboard only: Tab from Name past Team to Provider, arrow to the next provider; its fields swap in.
    page.get_by_label("Name").press("Tab")
    expect(page.get_by_label("Team")).to_be_focused()
    page.keyboard.press("Tab")
    expect(page.get_by_label("Provider")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_label("Provider")).to_have_value("anthropic")
    expect(page.get_by_label("Organization")).to_have_count(0)
    expect(page.get_by_label("Authentication method")).to_be_hidden()
    page.get_by_label("Provider").select_option(label="OpenAI")
    page.get_by_label("Authentication method").select_option(label="Azure OpenAI (API key)")
    page.get_by_label("Endpoint URL").fill("https://kept.openai.azure.com")

    page.get_by_label("Provider").select_option(label="Google Vertex AI (GCP)")

    expect(page.get_by_label("Project ID")).to_be_visible()
    expect(page.get_by_label("Service account key (JSON)")).to_have_attribute("type", "password")
    expect(page.get_by_label("Location")).to_have_attribute("placeholder", "us-central1")
    expect(page.get_by_label("Authentication method")).to_be_hidden()  # Vertex AI has one method
    expect(page.get_by_label("Name")).to_have_value("gcp-main")
    expect(page.get_by_label("Description")).to_have_value("Typed before any swap")

    # Back to OpenAI and Azure: the Endpoint URL typed earlier is still there.
    page.get_by_label("Provider").select_option(label="OpenAI")
    expect(page.get_by_label("Organization")).to_be_visible()
    page.get_by_label("Authentication method").select_option(label="Azure OpenAI (API key)")
    expect(page.get_by_label("Endpoint URL")).to_have_value("https://kept.openai.azure.com")
    expect(page.get_by_label("Authentication method")).to_be_focused()

    # Vertex AI, submitted with a bad project id: the error shows next to its field, nothing is saved.
    page.get_by_label("Provider").select_option(label="Google Vertex AI (GCP)")
    page.get_by_label("Project ID").fill("X")
    page.get_by_role("button", name="Create").click()
    expect(page.locator(".field-invalid").filter(has=page.get_by_label("Project ID"))).to_be_visible()
    assert not Connection.objects.exists()


def test_without_javascript_a_changed_provider_re_renders_the_fields_without_saving(
    browser: Browser, live_server, admin_user
):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        log_in(page, live_server.url)
        page.get_by_role("link", name="Create", exact=True).click()
        page.get_by_label("Name").fill("gcp-main")
        page.get_by_label("API key").fill(PLANTED_KEY)
        page.get_by_label("Provider").select_option(label="Google Vertex AI (GCP)")
        expect(page.get_by_label("Project ID")).to_have_count(0)  # no script: nothing swaps yet

        page.get_by_role("button", name="Create").click()

        expect(page.get_by_role("alert")).to_contain_text("now those of Google Vertex AI (GCP)")
        expect(page.get_by_label("Project ID")).to_be_visible()
        expect(page.get_by_label("Name")).to_have_value("gcp-main")
        assert PLANTED_KEY not in page.content()
        assert not Connection.objects.exists()

        page.get_by_label("Service account key (JSON)").fill(
            '{"type": "service_account", "client_email": "bot@my-project.iam.gserviceaccount.com", '
            '"private_key": "-----BEGIN PRIVATE KEY-----\\nabc\\n-----END PRIVATE KEY-----\\n"}'
        )
        page.get_by_label("Project ID").fill("my-project-123")
        page.get_by_role("button", name="Create").click()
        expect(page.get_by_text("Connection “gcp-main” created.")).to_be_visible()
        expect(row(page, "gcp-main")).to_contain_text("service account bot@my-project.iam.gserviceaccount.com")
    finally:
        context.close()
