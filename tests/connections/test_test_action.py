"""The Test action: the API route and the list's Test button call the provider with the stored credentials."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from tests.conftest import PLANTED_KEY


@pytest.fixture
def api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_a_good_key_tests_ok_through_the_api(api, openai_chat, fake_openai):
    response = api.post("/api/v1/connections/openai-prod/test/")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "status": 200, "message": "OpenAI accepted the credentials."}
    assert fake_openai.requests[0].path == "/v1/models" and fake_openai.presented_keys() == [PLANTED_KEY]


def test_a_revoked_key_tests_not_ok_without_showing_it(api, openai_chat, fake_openai):
    fake_openai.keys.clear()  # the provider no longer accepts the key
    response = api.post("/api/v1/connections/openai-prod/test/")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is False and body["status"] == 401
    assert PLANTED_KEY not in response.content.decode()


def test_testing_needs_the_change_permission_and_a_known_connection(django_user_model, openai_chat, fake_openai):
    """Test spends the stored key and tells whether it works: it is for those who may change the connection."""
    client = APIClient()
    user = django_user_model.objects.create_user("plain")
    user.user_permissions.add(Permission.objects.get(codename="view_connection"))
    client.force_authenticate(user)
    assert client.get("/api/v1/connections/openai-prod/").status_code == 200
    refused = client.post("/api/v1/connections/openai-prod/test/")
    assert refused.status_code == 403
    assert "permission" in refused.json()["detail"]
    assert fake_openai.requests == []  # the key was not spent
    user.user_permissions.add(Permission.objects.get(codename="change_connection"))
    client.force_authenticate(django_user_model.objects.get(pk=user.pk))
    assert client.post("/api/v1/connections/missing/test/").status_code == 404
    assert client.post("/api/v1/connections/openai-prod/test/").json()["ok"] is True
    assert APIClient().post("/api/v1/connections/openai-prod/test/").status_code == 401


def test_the_test_button_is_shown_and_works_only_with_the_change_permission(client, django_user_model, openai_chat,
                                                                           fake_openai):
    from tests.web import login_with_perms

    login_with_perms(client, django_user_model, "connections.view_connection", "endpoints.view_endpoint")
    page = client.get("/settings/connections/").content.decode()
    assert "openai-prod" in page and 'action="/settings/connections/openai-prod/test/"' not in page
    assert client.post("/settings/connections/openai-prod/test/").status_code == 403
    assert fake_openai.requests == []

    login_with_perms(client, django_user_model, "connections.view_connection", "connections.change_connection",
                     username="editor")
    page = client.get("/settings/connections/").content.decode()
    assert 'action="/settings/connections/openai-prod/test/"' in page
    response = client.post("/settings/connections/openai-prod/test/", follow=True)
    assert "OpenAI accepted the credentials." in response.content.decode()


def test_the_list_has_a_test_button_that_reports_as_a_message(client, admin_user, openai_chat, fake_openai):
    client.force_login(admin_user)
    page = client.get("/settings/connections/").content.decode()
    assert 'action="/settings/connections/openai-prod/test/"' in page
    response = client.post("/settings/connections/openai-prod/test/", {"next": "/settings/connections/?page=1"},
                           follow=True)
    assert response.redirect_chain[-1][0] == "/settings/connections/?page=1"
    assert "OpenAI accepted the credentials." in response.content.decode()
    fake_openai.keys.clear()
    response = client.post("/settings/connections/openai-prod/test/", {"next": "https://evil.example/"}, follow=True)
    assert response.redirect_chain[-1][0] == "/settings/connections/"
    text = response.content.decode()
    assert "failed (provider status 401)" in text and PLANTED_KEY not in text


def test_the_test_button_needs_a_post(client, admin_user, openai_chat):
    client.force_login(admin_user)
    assert client.get("/settings/connections/openai-prod/test/").status_code == 405


@pytest.mark.django_db
def test_undecryptable_secrets_test_not_ok_and_say_so_without_calling_the_provider(openai_chat, fake_openai, use_keys):
    from cryptography.fernet import Fernet

    from connections.models import Connection
    from connections.services import connection_test

    use_keys(Fernet.generate_key().decode())
    connection = Connection.objects.get(pk=openai_chat.destinations.get().connection.pk)

    ok, status, message = connection_test(connection=connection)

    assert (ok, status) == (False, None)
    assert "cannot be decrypted" in message
    assert fake_openai.requests == []
