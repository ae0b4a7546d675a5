"""One connection no configured key decrypts, next to one that works: every surface says so clearly about
the broken one and keeps serving the good one (the broken one's calls answer 503)."""

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from connections.models import Connection
from connections.secrets import UNDECRYPTABLE_LABEL, mask_secret
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI
from tokens.models import ApiToken

GOOD_KEY = "sk-good-key-still-readable-0123456789"
LOST_KEY = Fernet.generate_key().decode()  # wrote the broken connection's secrets; no longer configured
CHAT = {"messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture
def fake():
    with FakeOpenAI(keys={GOOD_KEY, PLANTED_KEY}) as server:
        yield server


@pytest.fixture(params=["broken newest", "good newest"])
def two_connections(request, make_connection, make_endpoint, use_keys, fake):
    """`broken` (saved under a key since removed; endpoint `broken-chat`) and `good` (endpoint `good-chat`).

    Both orders: which one was written last must not change any answer (/healthz reads the newest ones).
    """
    current = settings.FIELD_ENCRYPTION_KEY[0]
    config = {"base_url": fake.base_url}

    def broken() -> Connection:
        use_keys(LOST_KEY)
        connection = make_connection("broken", secrets={"api_key": PLANTED_KEY}, config=config)
        use_keys(current)
        return connection

    def good() -> Connection:
        return make_connection("good", secrets={"api_key": GOOD_KEY}, config=config)

    made = [good(), broken()] if request.param == "broken newest" else [broken(), good()]
    by_name = {connection.name: connection for connection in made}
    make_endpoint("broken-chat", by_name["broken"])
    make_endpoint("good-chat", by_name["good"])
    assert not Connection.objects.get(name="broken").secrets_decryptable
    return by_name


@pytest.fixture
def page(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def token(admin_user) -> str:
    return ApiToken.issue(user=admin_user)[1]


@pytest.fixture
def api(token) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def no_secret_in(text: str) -> None:
    assert PLANTED_KEY not in text and GOOD_KEY not in text


def test_the_settings_pages_show_it_and_keep_working(page, two_connections):
    listing = page.get("/settings/connections/")
    edit = page.get("/settings/connections/broken/edit/")
    endpoints = page.get("/settings/endpoints/")
    admin = page.get("/admin/connections/connection/")

    assert listing.status_code == edit.status_code == endpoints.status_code == admin.status_code == 200
    text = listing.content.decode()
    assert UNDECRYPTABLE_LABEL in text and mask_secret(GOOD_KEY) in text
    assert "cannot be decrypted: re-enter it" in edit.content.decode()
    assert UNDECRYPTABLE_LABEL in admin.content.decode()
    for response in (listing, edit, endpoints, admin):
        no_secret_in(response.content.decode())


def test_the_api_lists_and_shows_it_as_such(api, two_connections):
    listed = api.get("/api/v1/connections/")
    broken = api.get("/api/v1/connections/broken/")
    endpoints = api.get("/api/v1/endpoints/")

    assert listed.status_code == broken.status_code == endpoints.status_code == 200
    secrets = {row["name"]: row["secrets"] for row in listed.json()["results"]}
    assert secrets == {"broken": {"api_key": UNDECRYPTABLE_LABEL}, "good": {"api_key": mask_secret(GOOD_KEY)}}
    assert broken.json()["secrets"] == {"api_key": UNDECRYPTABLE_LABEL}
    no_secret_in(listed.content.decode() + broken.content.decode())


@pytest.mark.parametrize("route", ["openai", "invocations", "stream"])
def test_the_gateway_answers_503_for_its_endpoints_and_200_for_the_others(site, token, two_connections, fake,
                                                                          route):
    def call(endpoint: str):
        if route == "invocations":
            path, body = f"/gateway/{endpoint}/invocations", CHAT
        else:
            path, body = "/gateway/v1/chat/completions", {**CHAT, "model": endpoint, "stream": route == "stream"}
        return site.post(path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    refused, served = call("broken-chat"), call("good-chat")

    assert refused.status_code == 503
    error = refused.json()["error"]
    assert error["code"] == "connection_secrets_unavailable" and "'broken'" in error["message"]
    assert served.status_code == 200
    no_secret_in(refused.content.decode())
    assert fake.presented_keys() == [GOOD_KEY]  # nothing was sent for the broken one, ciphertext least of all


def test_the_models_list_still_lists_every_endpoint(token, two_connections, site):
    response = site.get("/gateway/v1/models", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200
    assert [model["id"] for model in response.json()["data"]] == ["broken-chat", "good-chat"]


def test_the_test_action_reports_it(api, page, two_connections, fake):
    broken = api.post("/api/v1/connections/broken/test/")
    good = api.post("/api/v1/connections/good/test/")
    button = page.post("/settings/connections/broken/test/", follow=True)

    assert broken.status_code == good.status_code == button.status_code == 200
    assert broken.json()["ok"] is False and broken.json()["status"] is None
    assert "cannot be decrypted" in broken.json()["message"] and "broken" in broken.json()["message"]
    assert good.json()["ok"] is True
    assert "cannot be decrypted" in button.content.decode()
    no_secret_in(broken.content.decode() + button.content.decode())


def test_list_connections_shows_both(two_connections):
    out = StringIO()
    call_command("list_connections", stdout=out)

    rows = {line.split()[0]: line for line in out.getvalue().splitlines()[1:]}
    assert UNDECRYPTABLE_LABEL in rows["broken"] and mask_secret(GOOD_KEY) in rows["good"]
    no_secret_in(out.getvalue())


def test_rotate_encryption_key_check_names_it(two_connections):
    out = StringIO()
    with pytest.raises(CommandError, match="cannot be decrypted with any configured key: broken"):
        call_command("rotate_encryption_key", "--check", stdout=out)

    assert "Under the first key:  1" in out.getvalue() and "Cannot be decrypted:  1" in out.getvalue()


def test_healthz_stays_200_whichever_was_written_last(client, two_connections):
    """One unreadable connection is that connection's problem (its own 503), not the server's."""
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok", "encryption": "ok"}


def test_healthz_is_503_when_the_keys_read_none_of_the_recent_secrets(client, two_connections, use_keys):
    use_keys(Fernet.generate_key().decode())  # a server started with the wrong key list

    response = client.get("/healthz")

    assert response.status_code == 503
    assert "does not decrypt" in response.json()["encryption"]
