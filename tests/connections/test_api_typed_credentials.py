"""The API's tests of typed credentials (`POST /api/v1/connection-test/`, a body on `POST .../<name>/test/`) and
`?verify=true` on writes; the provider is a fake on 127.0.0.1."""

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEntry
from connections.models import Connection
from tests.api_support import grant
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import closed_port

pytestmark = pytest.mark.django_db

TEST_URL = "/api/v1/connection-test/"
TYPED_KEY = "sk-typed-NOTSAVED-0123456789-abcdQRST"


@pytest.fixture
def api(admin_user) -> APIClient:
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


@pytest.fixture
def stored(make_connection, fake_openai) -> Connection:
    return make_connection("openai-prod", config={"base_url": fake_openai.base_url})


def body(base_url: str, **fields) -> dict:
    return {"name": "typed", "provider": "openai", "auth_method": "api_key", "secrets": {"api_key": TYPED_KEY},
            "config": {"base_url": base_url}, **fields}


def nothing_written() -> tuple:
    return list(Connection.objects.values_list("name", "updated_at")), AuditEntry.objects.count()


# --- Testing typed credentials ----------------------------------------------------------------------------


def test_a_connection_body_is_tested_without_being_saved(api, fake_openai):
    fake_openai.keys.add(TYPED_KEY)
    response = api.post(TEST_URL, body(fake_openai.base_url), format="json")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "status": 200, "message": "OpenAI accepted the credentials."}
    assert fake_openai.presented_keys() == [TYPED_KEY]
    assert not Connection.objects.exists() and not AuditEntry.objects.exists()


def test_a_rejected_typed_key_tests_not_ok_without_echoing_it(api, fake_openai):
    response = api.post(TEST_URL, body(fake_openai.base_url), format="json")
    assert response.status_code == 200
    answer = response.json()
    assert (answer["ok"], answer["status"]) == (False, 401) and "OpenAI rejected" in answer["message"]
    assert TYPED_KEY not in response.content.decode()
    assert not Connection.objects.exists() and not AuditEntry.objects.exists()


def test_the_name_is_optional_and_may_be_taken_but_credentials_are_checked_as_a_write_checks_them(api, fake_openai,
                                                                                                  stored):
    fake_openai.keys.add(TYPED_KEY)
    without_name = body(fake_openai.base_url)
    del without_name["name"]
    for sent in (without_name, body(fake_openai.base_url, name="openai-prod", description="x")):
        assert api.post(TEST_URL, sent, format="json").json()["ok"] is True
    assert len(fake_openai.requests) == 2
    refused = [
        body("http://169.254.169.254/v1"),  # the metadata address
        body(fake_openai.base_url, secrets={"api_key": "sk-typed-bad\u00e9key-0123456789"}),  # not a header value
        body(fake_openai.base_url, secrets={}),  # the key is required
        body(fake_openai.base_url, surprise=1),  # unknown field
        body(fake_openai.base_url, name="Not A Name"),
    ]
    for sent in refused:
        response = api.post(TEST_URL, sent, format="json")
        assert response.status_code == 400, sent
        assert "sk-typed-bad" not in response.content.decode()
    assert len(fake_openai.requests) == 2  # no refused value went out


def test_a_body_on_a_stored_connections_test_is_merged_over_it_as_a_patch(api, fake_openai, stored):
    before = nothing_written()
    answer = api.post("/api/v1/connections/openai-prod/test/", {"secrets": {"api_key": TYPED_KEY}},
                      format="json").json()
    assert answer["ok"] is False and fake_openai.presented_keys() == [TYPED_KEY]

    with FakeOpenAI(keys={PLANTED_KEY}) as second:
        answer = api.post("/api/v1/connections/openai-prod/test/", {"config": {"base_url": second.base_url}},
                          format="json").json()
        assert answer["ok"] is True and second.presented_keys() == [PLANTED_KEY]  # the stored key, typed address
    # No body or `{}`: the stored credentials, as before.
    assert api.post("/api/v1/connections/openai-prod/test/", {}, format="json").json()["ok"] is True
    assert api.post("/api/v1/connections/openai-prod/test/").json()["ok"] is True
    assert fake_openai.presented_keys()[1:] == [PLANTED_KEY, PLANTED_KEY]
    assert nothing_written() == before
    assert api.post("/api/v1/connections/openai-prod/test/", {"config": {"base_url": "http://10.0.0.1"}},
                    format="json").status_code == 400


def test_testing_typed_credentials_needs_the_permissions_of_the_stored_test(django_user_model, fake_openai, stored):
    client = APIClient()
    assert client.post(TEST_URL, body(fake_openai.base_url), format="json").status_code == 401
    user = django_user_model.objects.create_user("limited")
    client.force_authenticate(user)
    grant(user, "connections.view_connection", "connections.change_connection")
    assert client.post(TEST_URL, body(fake_openai.base_url), format="json").status_code == 403  # may not create
    assert client.post("/api/v1/connections/openai-prod/test/", {"secrets": {"api_key": TYPED_KEY}},
                       format="json").json()["ok"] is False  # may test the one it may change
    other = django_user_model.objects.create_user("adder")
    grant(other, "connections.view_connection", "connections.add_connection")
    client.force_authenticate(other)
    assert client.post(TEST_URL, body(fake_openai.base_url), format="json").status_code == 403  # may not spend a key
    assert client.post("/api/v1/connections/openai-prod/test/", {"secrets": {"api_key": TYPED_KEY}},
                       format="json").status_code == 403
    assert fake_openai.presented_keys() == [TYPED_KEY]


# --- ?verify=true on writes -------------------------------------------------------------------------------


def test_a_create_that_verifies_refuses_a_rejected_key_with_the_providers_verdict(api, fake_openai):
    response = api.post("/api/v1/connections/?verify=true", body(fake_openai.base_url), format="json")

    assert response.status_code == 400
    answer = response.json()
    assert answer["detail"].startswith("Not saved: the provider did not accept the credentials. OpenAI rejected")
    assert answer["verification"]["ok"] is False and answer["verification"]["status"] == 401
    assert TYPED_KEY not in response.content.decode()
    assert not Connection.objects.exists() and not AuditEntry.objects.exists()


def test_a_create_that_verifies_saves_an_accepted_key(api, fake_openai):
    fake_openai.keys.add(TYPED_KEY)
    response = api.post("/api/v1/connections/?verify=true", body(fake_openai.base_url), format="json")
    assert response.status_code == 201
    assert Connection.objects.get(name="typed").secrets == {"api_key": TYPED_KEY}
    assert fake_openai.presented_keys() == [TYPED_KEY]


def test_writes_call_the_provider_only_when_asked_to_verify(api, fake_openai, stored):
    assert api.post("/api/v1/connections/?verify=false", body(fake_openai.base_url), format="json").status_code == 201
    assert api.patch("/api/v1/connections/typed/", {"description": "x"}, format="json").status_code == 200
    assert fake_openai.requests == []
    assert api.patch("/api/v1/connections/typed/?verify=maybe", {"description": "y"}, format="json").json() == {
        "verify": ["Must be true or false."]}


def test_a_patch_that_verifies_refuses_a_rejected_key_and_keeps_the_stored_one(api, fake_openai, stored):
    before = nothing_written()
    response = api.patch("/api/v1/connections/openai-prod/?verify=true", {"secrets": {"api_key": TYPED_KEY}},
                         format="json")
    assert response.status_code == 400 and response.json()["verification"]["status"] == 401
    assert nothing_written() == before
    assert Connection.objects.get(name="openai-prod").secrets == {"api_key": PLANTED_KEY}

    fake_openai.keys.add(TYPED_KEY)
    response = api.patch("/api/v1/connections/openai-prod/?verify=true", {"secrets": {"api_key": TYPED_KEY}},
                         format="json")
    assert response.status_code == 200
    assert Connection.objects.get(name="openai-prod").secrets == {"api_key": TYPED_KEY}
    assert AuditEntry.objects.filter(action=AuditEntry.Action.KEY_ROTATED).count() == 1


def test_a_put_that_verifies_calls_an_unreachable_provider_a_refusal(api, stored):
    before = nothing_written()
    unreachable = f"http://127.0.0.1:{closed_port()}/v1"
    response = api.put("/api/v1/connections/openai-prod/?verify=1", {
        "name": "openai-prod", "provider": "openai", "auth_method": "api_key", "config": {"base_url": unreachable}},
        format="json")
    assert response.status_code == 400
    answer = response.json()
    assert answer["detail"] == ("Not saved: the provider could not be reached to verify the credentials. "
                                "Could not connect to OpenAI.")
    assert answer["verification"] == {"ok": False, "status": None, "message": "Could not connect to OpenAI."}
    assert nothing_written() == before


@pytest.mark.django_db(transaction=True)
def test_tests_and_verified_writes_run_outside_a_transaction(api, fake_openai, stored):
    """As served (autocommit): the row is read without a lock, which PostgreSQL allows only in a transaction."""
    fake_openai.keys.add(TYPED_KEY)
    assert api.post("/api/v1/connections/openai-prod/test/").json()["ok"] is True
    assert api.post("/api/v1/connections/openai-prod/test/", {"secrets": {"api_key": TYPED_KEY}},
                    format="json").json()["ok"] is True
    assert api.patch("/api/v1/connections/openai-prod/?verify=true", {"secrets": {"api_key": TYPED_KEY}},
                     format="json").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_verified_patch_refuses_to_save_what_changed_while_the_provider_was_asked(api, make_connection):
    from tests.connections.test_typed_credentials import EditedWhileAsked

    def change_the_address():
        connection = Connection.objects.get(name="openai-prod")
        connection.config = {"base_url": "http://127.0.0.1:9/v1"}
        connection.save()

    with EditedWhileAsked(change_the_address) as provider:
        make_connection("openai-prod", config={"base_url": provider.base_url})
        response = api.patch("/api/v1/connections/openai-prod/?verify=true", {"description": "verified?"},
                             format="json")

    assert response.status_code == 409
    assert "changed while the provider was asked" in response.json()["detail"]
    assert Connection.objects.get(name="openai-prod").description == ""
