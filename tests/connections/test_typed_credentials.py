"""Test on the connection form (the credentials as typed, before they are saved) and Save's "Verify credentials
with the provider before saving", on the settings pages; the provider is a fake on 127.0.0.1."""

import re

import pytest
from django.db import connection as db_connection
from django.db.models import Max

from audit.models import AuditEntry
from connections.models import Connection
from connections.services import connection_save
from tests.conftest import PLANTED_KEY
from tests.fakes.azure_token import FakeEntraID
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import closed_port
from tests.provider_fixtures import AZURE_API_VERSION
from tests.web import login_with_perms

pytestmark = pytest.mark.django_db

CREATE_URL = "/settings/connections/new/"
CREATE_TEST_URL = "/settings/connections/new/test-typed/"
TYPED_KEY = "sk-typed-NOTSAVED-0123456789-abcdQRST"
ROTATED_KEY = "sk-rotated-MEANWHILE-0123456789-abcdWXYZ"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "2b7e1f3c-5a4d-4e6f-8a9b-0c1d2e3f4a5b"


def edit_url(name: str) -> str:
    return f"/settings/connections/{name}/edit/"


def edit_test_url(name: str) -> str:
    return f"/settings/connections/{name}/edit/test-typed/"


def create_form(base_url: str, **fields) -> dict:
    return {"name": "typed-openai", "provider": "openai", "auth_method": "api_key", "selection": "openai/api_key",
            "secrets.api_key": TYPED_KEY, "config.organization": "", "config.base_url": base_url,
            "environment": "production", "description": "", "key_max_age_days": "", **fields}


def edit_form(connection: Connection, **fields) -> dict:
    return {"name": connection.name, "provider": connection.provider, "auth_method": connection.auth_method,
            "selection": f"{connection.provider}/{connection.auth_method}", "environment": connection.environment,
            "description": connection.description, "key_max_age_days": "",
            **{f"config.{key}": value for key, value in connection.config.items()}, **fields}


def stored_state() -> tuple:
    """Everything a save or an audit entry would change."""
    return (list(Connection.objects.order_by("pk").values_list("name", "updated_at", "secrets_updated_at")),
            AuditEntry.objects.count(), AuditEntry.objects.aggregate(Max("pk"))["pk__max"])


@pytest.fixture
def stored(make_connection, fake_openai) -> Connection:
    return make_connection("openai-prod", config={"base_url": fake_openai.base_url})


# --- Test on the form: nothing saved, the verdict on the same page ------------------------------------------


def test_the_create_form_tests_a_typed_key_the_provider_accepts_without_saving_it(admin_client, fake_openai):
    fake_openai.keys.add(TYPED_KEY)
    before = stored_state()

    response = admin_client.post(CREATE_TEST_URL, create_form(fake_openai.base_url))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Test passed:" in page and "OpenAI accepted the credentials." in page and "Nothing was saved." in page
    assert fake_openai.presented_keys() == [TYPED_KEY]
    assert stored_state() == before and not Connection.objects.exists()
    # The typed key is not sent back: the page says to type it again, and keeps everything else.
    assert TYPED_KEY not in page and "type the key again before saving" in page
    assert 'value="typed-openai"' in page and f'value="{fake_openai.base_url}"' in page
    # The form still saves (and tests) at its own addresses.
    assert f'action="{CREATE_URL}"' in page and f'formaction="{CREATE_TEST_URL}"' in page


def test_the_create_form_reports_a_typed_key_the_provider_rejects(admin_client, fake_openai):
    response = admin_client.post(CREATE_TEST_URL, create_form(fake_openai.base_url))

    page = response.content.decode()
    assert "Test failed (provider status 401):" in page and "OpenAI rejected" in page
    assert fake_openai.presented_keys() == [TYPED_KEY]
    assert TYPED_KEY not in page and not Connection.objects.exists() and not AuditEntry.objects.exists()


def test_a_test_ignores_fields_it_does_not_read_but_checks_the_credentials_as_a_save_does(admin_client, fake_openai,
                                                                                          stored):
    fake_openai.keys.add(TYPED_KEY)
    # A blank or taken name does not keep a Test from running.
    for name in ("", "openai-prod"):
        page = admin_client.post(CREATE_TEST_URL, create_form(fake_openai.base_url, name=name)).content.decode()
        assert "Test passed:" in page and "This field is required" not in page and "already exists" not in page
    assert len(fake_openai.requests) == 2
    # The saved path's rules hold for typed values: no metadata address, no key that cannot be a header.
    refused = [create_form("http://169.254.169.254/v1"), create_form(fake_openai.base_url, **{
        "secrets.api_key": "sk-typed-bad\u00e9key-0123456789"})]
    for form in refused:
        page = admin_client.post(CREATE_TEST_URL, form).content.decode()
        assert "Not tested:" in page and "Test passed" not in page
    assert len(fake_openai.requests) == 2  # the refused values never went out
    assert "sk-typed-bad" not in page


def test_blank_secret_on_the_edit_form_tests_the_stored_key_with_the_typed_settings(admin_client, fake_openai,
                                                                                     stored):
    before = stored_state()
    second = type(fake_openai)(keys={PLANTED_KEY})  # the same provider at another address, typed into the form
    with second:
        response = admin_client.post(edit_test_url("openai-prod"), edit_form(
            stored, **{"secrets.api_key": "", "config.base_url": second.base_url, "description": "typed"}))

        page = response.content.decode()
        assert "Test passed:" in page
        assert second.presented_keys() == [PLANTED_KEY]  # the stored key, at the typed address
        assert fake_openai.requests == []
    assert PLANTED_KEY not in page and stored_state() == before
    assert Connection.objects.get(name="openai-prod").config == {"base_url": fake_openai.base_url}
    assert "type the key again" not in page  # nothing typed into a secret input: nothing lost
    assert f'action="{edit_url("openai-prod")}"' in page


def test_a_typed_key_on_the_edit_form_is_tested_instead_of_the_stored_one(admin_client, fake_openai, stored):
    before = stored_state()

    page = admin_client.post(edit_test_url("openai-prod"),
                             edit_form(stored, **{"secrets.api_key": TYPED_KEY})).content.decode()

    assert "Test failed (provider status 401):" in page
    assert fake_openai.presented_keys() == [TYPED_KEY]
    assert stored_state() == before and Connection.objects.get(name="openai-prod").secrets == {"api_key": PLANTED_KEY}
    assert TYPED_KEY not in page and PLANTED_KEY not in page


def test_the_forms_script_gets_the_verdict_alone(admin_client, fake_openai, stored):
    response = admin_client.post(edit_test_url("openai-prod"), edit_form(stored, **{"secrets.api_key": ""}),
                                 HTTP_X_REQUESTED_WITH="fetch")
    fragment = response.content.decode()
    assert response.status_code == 200 and "<html" not in fragment and "<form" not in fragment
    assert 'data-test-ok="true"' in fragment and "OpenAI accepted the credentials." in fragment
    assert "type the key again" not in fragment  # the script keeps what was typed in the inputs


def test_a_typed_entra_id_secret_is_not_answered_by_the_stored_ones_cached_token(admin_client, settings,
                                                                                fake_openai, make_connection):
    """Tokens obtained with the stored client secret are cached; a Test of another secret must ask Entra ID."""
    with FakeEntraID(TENANT_ID, CLIENT_ID, {PLANTED_KEY}) as entra:
        settings.AZURE_AUTHORITY_HOST = entra.url
        fake_openai.authority = entra
        connection = make_connection("azure-ad", auth_method="azure_ad", secrets={"client_secret": PLANTED_KEY},
                                     config={"endpoint_url": fake_openai.url, "api_version": AZURE_API_VERSION,
                                             "tenant_id": TENANT_ID, "client_id": CLIENT_ID})
        assert "accepted" in admin_client.post("/settings/connections/azure-ad/test/", follow=True).content.decode()
        assert len(entra.requests) == 1  # the stored secret's token is now cached

        page = admin_client.post(edit_test_url("azure-ad"), edit_form(
            connection, **{"secrets.client_secret": "wrong-client-secret-0123456789"})).content.decode()

        assert "Test failed" in page
        assert len(entra.requests) == 2 and "wrong-client-secret" in entra.requests[1].body.decode()
        page = admin_client.post(edit_test_url("azure-ad"), edit_form(
            connection, **{"secrets.client_secret": ""})).content.decode()
        assert "Test passed:" in page and len(entra.requests) == 3  # a Test always asks afresh
        assert "wrong-client-secret" not in page


def test_test_on_the_form_needs_a_post_and_the_permissions_of_the_stored_test(client, django_user_model, fake_openai,
                                                                              stored):
    login_with_perms(client, django_user_model, "connections.view_connection", "connections.add_connection",
                     username="adder")
    page = client.get(CREATE_URL).content.decode()
    assert page.count('id="typed-test"') == 0  # may create, may not spend a key on a test
    assert client.post(CREATE_TEST_URL, create_form(fake_openai.base_url)).status_code == 403
    assert client.post(edit_test_url("openai-prod"), edit_form(stored)).status_code == 403
    assert fake_openai.requests == []

    login_with_perms(client, django_user_model, "connections.view_connection", "connections.change_connection",
                     username="changer")
    assert client.post(CREATE_TEST_URL, create_form(fake_openai.base_url)).status_code == 403  # may not create
    assert 'id="typed-test"' in client.get(edit_url("openai-prod")).content.decode()
    assert client.get(edit_test_url("openai-prod")).status_code == 405
    assert client.post(edit_test_url("missing"), edit_form(stored)).status_code == 404
    assert client.post(edit_test_url("openai-prod"), edit_form(stored)).status_code == 200

    login_with_perms(client, django_user_model, "connections.add_connection", "connections.change_connection",
                     username="both")
    assert 'id="typed-test"' in client.get(CREATE_URL).content.decode()
    assert client.post(CREATE_TEST_URL, create_form(fake_openai.base_url)).status_code == 200


def test_a_connection_named_new_keeps_its_stored_test(admin_client, make_connection, fake_openai):
    make_connection("new", config={"base_url": fake_openai.base_url})
    response = admin_client.post("/settings/connections/new/test/", follow=True)
    assert "Test of “new”: OpenAI accepted the credentials." in response.content.decode()


# --- Save with "Verify credentials before saving" ---------------------------------------


def test_verify_before_save_refuses_a_rejected_key_and_saves_nothing(admin_client, fake_openai):
    response = admin_client.post(CREATE_URL, create_form(fake_openai.base_url, verify_credentials="on"))

    assert response.status_code == 200
    page = response.content.decode()
    assert "Not saved: the provider did not accept the credentials. OpenAI rejected" in page
    assert fake_openai.presented_keys() == [TYPED_KEY]
    assert not Connection.objects.exists() and not AuditEntry.objects.exists()
    assert TYPED_KEY not in page
    assert re.search(r'<input type="checkbox" name="verify_credentials"[^>]* checked>', page)  # still ticked


def test_verify_before_save_saves_an_accepted_key(admin_client, fake_openai):
    fake_openai.keys.add(TYPED_KEY)
    response = admin_client.post(CREATE_URL, create_form(fake_openai.base_url, verify_credentials="on"))

    assert response.status_code == 302
    assert Connection.objects.get(name="typed-openai").secrets == {"api_key": TYPED_KEY}
    assert fake_openai.presented_keys() == [TYPED_KEY]
    assert AuditEntry.objects.count() == 1


def test_verify_before_save_calls_an_unreachable_provider_a_refusal_and_says_so(admin_client, stored):
    before = stored_state()
    unreachable = f"http://127.0.0.1:{closed_port()}/v1"

    page = admin_client.post(edit_url("openai-prod"), edit_form(
        stored, **{"config.base_url": unreachable, "verify_credentials": "on"})).content.decode()

    assert "Not saved: the provider could not be reached to verify the credentials. Could not connect to OpenAI." in page
    assert stored_state() == before


def test_verify_before_save_on_the_edit_form_checks_the_stored_key_and_saves_the_edit(admin_client, fake_openai,
                                                                                     stored):
    response = admin_client.post(edit_url("openai-prod"), edit_form(
        stored, **{"description": "verified", "verify_credentials": "on"}))

    assert response.status_code == 302
    assert fake_openai.presented_keys() == [PLANTED_KEY]
    assert Connection.objects.get(name="openai-prod").description == "verified"


def test_verify_before_save_on_the_edit_form_refuses_a_rejected_typed_key(admin_client, fake_openai, stored):
    before = stored_state()
    page = admin_client.post(edit_url("openai-prod"), edit_form(
        stored, **{"secrets.api_key": TYPED_KEY, "verify_credentials": "on"})).content.decode()

    assert "Not saved: the provider did not accept the credentials." in page
    assert stored_state() == before and TYPED_KEY not in page


def test_without_the_box_ticked_save_does_not_call_the_provider(admin_client, fake_openai, stored):
    response = admin_client.post(edit_url("openai-prod"), edit_form(stored, **{"secrets.api_key": TYPED_KEY}))
    assert response.status_code == 302 and fake_openai.requests == []
    assert Connection.objects.get(name="openai-prod").secrets == {"api_key": TYPED_KEY}


class EditedWhileAsked(FakeOpenAI):
    """A provider that accepts the stored key and, while answering the first request, lets `edit` change the
    stored connection (someone else's save, from another thread and database connection)."""

    def __init__(self, edit):
        super().__init__(keys={PLANTED_KEY})
        self.edit = edit

    def handle(self, request):
        edit, self.edit = self.edit, None
        if edit is not None:
            try:
                edit()
            finally:
                db_connection.close()  # this thread's own database connection
        return super().handle(request)


@pytest.mark.django_db(transaction=True)
def test_a_key_rotated_while_the_provider_is_asked_is_not_saved_as_verified(admin_client, make_connection):
    def rotate():
        connection = Connection.objects.get(name="openai-prod")
        connection.update_secrets({"api_key": ROTATED_KEY})
        connection.full_clean()
        connection_save(connection=connection, actor=None)

    with EditedWhileAsked(rotate) as provider:
        stored = make_connection("openai-prod", config={"base_url": provider.base_url})
        # A blank key input stands for the stored key: the one verified is no longer the one stored at the save.
        page = admin_client.post(edit_url("openai-prod"), edit_form(
            stored, **{"description": "verified?", "verify_credentials": "on"})).content.decode()

    assert "Not saved: the stored connection changed while the provider was asked" in page
    saved = Connection.objects.get(name="openai-prod")
    assert saved.description == "" and saved.secrets == {"api_key": ROTATED_KEY}
