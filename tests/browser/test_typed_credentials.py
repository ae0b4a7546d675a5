"""Test on the connection form in a browser: the credentials as typed are checked in place (what was typed stays
in the inputs, nothing is saved), without JavaScript too; and Save refuses a key the provider rejects when asked
to verify first. The provider is a fake on 127.0.0.1."""

import pytest
from playwright.sync_api import Browser, Page, expect

from audit.models import AuditEntry
from connections.models import Connection
from tests.browser.conftest import log_in
from tests.conftest import PLANTED_KEY

pytestmark = pytest.mark.django_db(transaction=True)

TYPED_KEY = "sk-typed-INBROWSER-0123456789-abcdQRST"


def test_test_checks_the_typed_key_in_place_and_saves_nothing(page: Page, live_server, admin_user, make_connection,
                                                              fake_openai, artifacts):
    make_connection("openai-prod", config={"base_url": fake_openai.base_url})
    stored = Connection.objects.values_list("updated_at", "secrets_updated_at").get()
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/settings/connections/openai-prod/edit/")
    verdict = page.locator("#typed-test-result")

    page.get_by_label("API key").fill(TYPED_KEY)
    page.get_by_role("button", name="Test").click()

    expect(verdict).to_contain_text("Test failed (provider status 401)")
    expect(verdict).to_contain_text("OpenAI rejected")
    expect(verdict).to_contain_text("Nothing was saved.")
    expect(page.get_by_label("API key")).to_have_value(TYPED_KEY)  # still there to correct or save
    assert page.url.endswith("/settings/connections/openai-prod/edit/")
    assert TYPED_KEY not in verdict.inner_html()
    page.screenshot(path=artifacts / "typed-test-rejected.png", full_page=True)

    page.get_by_label("API key").fill("")  # blank: the stored key, as Save would keep it
    page.get_by_role("button", name="Test").click()

    expect(verdict).to_contain_text("Test passed: OpenAI accepted the credentials.")
    page.screenshot(path=artifacts / "typed-test-passed.png", full_page=True)
    assert fake_openai.presented_keys() == [TYPED_KEY, PLANTED_KEY]
    assert Connection.objects.values_list("updated_at", "secrets_updated_at").get() == stored
    assert not AuditEntry.objects.exclude(action=AuditEntry.Action.CREATED).exists()

    # A typed value the save path refuses is not sent: the verdict says why.
    page.get_by_label("Base URL").fill("http://169.254.169.254/v1")
    page.get_by_role("button", name="Test").click()
    expect(verdict).to_contain_text("Not tested:")
    expect(verdict).to_contain_text("Base URL:")
    assert len(fake_openai.requests) == 2


def test_test_on_the_create_form_then_create(page: Page, live_server, admin_user, fake_openai, artifacts):
    fake_openai.keys.add(TYPED_KEY)
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/settings/connections/new/")
    page.get_by_label("Name").fill("typed-openai")
    expect(page.get_by_label("Provider")).to_have_value("openai")  # the first provider: no fields to swap
    page.get_by_label("API key").fill(TYPED_KEY)
    page.get_by_label("Base URL").fill(fake_openai.base_url)

    page.get_by_role("button", name="Test").click()

    expect(page.locator("#typed-test-result")).to_contain_text("Test passed: OpenAI accepted the credentials.")
    assert not Connection.objects.exists()
    page.screenshot(path=artifacts / "typed-test-create.png", full_page=True)
    page.get_by_role("button", name="Create").click()  # the key typed before the Test is still in the form
    expect(page.get_by_text("Connection “typed-openai” created.")).to_be_visible()
    assert Connection.objects.get(name="typed-openai").secrets == {"api_key": TYPED_KEY}


def test_without_javascript_test_comes_back_with_the_verdict_and_save_still_saves(browser: Browser, live_server,
                                                                                  admin_user, make_connection,
                                                                                  fake_openai, artifacts):
    make_connection("openai-prod", config={"base_url": fake_openai.base_url})
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1280, "height": 800})
    page = context.new_page()
    try:
        log_in(page, live_server.url)
        page.goto(f"{live_server.url}/settings/connections/openai-prod/edit/")
        page.get_by_label("API key").fill(TYPED_KEY)
        page.get_by_label("Description").fill("typed, not saved")

        page.get_by_role("button", name="Test").click()

        verdict = page.locator("#typed-test-result")
        expect(verdict).to_contain_text("Test failed (provider status 401)")
        expect(verdict).to_contain_text("type the key again before saving")
        expect(page.get_by_label("API key")).to_have_value("")  # a page never carries a key back
        expect(page.get_by_label("Description")).to_have_value("typed, not saved")
        assert TYPED_KEY not in page.content()
        page.screenshot(path=artifacts / "typed-test-no-javascript.png", full_page=True)
        assert Connection.objects.get().description == ""

        page.get_by_role("button", name="Save").click()  # posts to the edit page, not to the Test's address
        expect(page.get_by_text("Connection “openai-prod” saved.")).to_be_visible()
        assert Connection.objects.get().description == "typed, not saved"
        assert Connection.objects.get().secrets == {"api_key": PLANTED_KEY}
    finally:
        context.close()


def test_save_with_verify_ticked_refuses_a_rejected_key(page: Page, live_server, admin_user, make_connection,
                                                        fake_openai, artifacts):
    make_connection("openai-prod", config={"base_url": fake_openai.base_url})
    log_in(page, live_server.url)
    page.goto(f"{live_server.url}/settings/connections/openai-prod/edit/")
    page.get_by_label("API key").fill(TYPED_KEY)
    page.get_by_label("Verify credentials before saving").check()

    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("alert")).to_contain_text("Not saved: the provider did not accept the credentials.")
    expect(page.get_by_label("Verify credentials before saving")).to_be_checked()
    page.screenshot(path=artifacts / "verify-before-save-refused.png", full_page=True)
    assert Connection.objects.get().secrets == {"api_key": PLANTED_KEY}
    assert AuditEntry.objects.count() == 1  # its creation only
