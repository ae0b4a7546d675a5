"""A connection any destination uses, primary or fallback, cannot be deleted from any surface; every such
endpoint is listed, once, wherever a connection's endpoints are shown."""

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from connections.models import Connection
from tests.api_support import api, make_user, operator  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db


@pytest.fixture
def backup(make_connection, make_endpoint):
    """Used only as a fallback, by two endpoints, one of them twice (two models)."""
    primary, backup = make_connection("openai-prod"), make_connection("backup")
    make_endpoint("chat", primary, fallbacks=((backup, "gpt-4o"), (backup, "gpt-4o-mini")))
    make_endpoint("chat-off", primary, fallbacks=((backup, "gpt-4o"),), enabled=False)
    return backup


def test_the_api_answers_409_naming_each_endpoint_once(api, backup):
    response = api.delete("/api/v1/connections/backup/")

    assert response.status_code == 409
    assert response.json()["endpoints"] == ["chat", "chat-off"]
    assert Connection.objects.filter(name="backup").exists()
    assert not AuditEntry.objects.filter(action="deleted").exists()


def test_the_page_warns_listing_the_endpoints_and_refuses(admin_client, backup):
    warning = admin_client.get("/settings/connections/backup/delete/").content.decode()
    assert "cannot be deleted" in warning and "2 endpoints" in warning
    assert warning.count('href="/settings/endpoints/chat/edit/"') == 1

    response = admin_client.post("/settings/connections/backup/delete/")

    assert response.status_code == 409
    assert Connection.objects.filter(name="backup").exists()


def test_the_connections_list_and_api_show_each_endpoint_using_it_once(admin_client, api, backup):
    page = admin_client.get("/settings/connections/").content.decode()
    assert page.count('href="/settings/endpoints/chat/edit/"') == 2  # openai-prod's row and backup's
    assert api.get("/api/v1/connections/backup/").json()["endpoints"] == ["chat", "chat-off"]


def test_the_admin_refuses_the_delete_and_counts_every_endpoint(admin_client, backup):
    page = admin_client.get(reverse("admin:connections_connection_changelist")).content.decode()
    assert "backup" in page
    response = admin_client.post(reverse("admin:connections_connection_delete", args=[backup.pk]), {"post": "yes"})
    assert response.status_code in (200, 302, 409)
    assert Connection.objects.filter(name="backup").exists()
