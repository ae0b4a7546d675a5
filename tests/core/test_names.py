"""A name holding NUL (which PostgreSQL text cannot even compare) is the name of nothing: 404 or 400, never 500."""

import pytest

from tests.api_support import api, make_user, operator  # noqa: F401 - fixtures

NUL_NAME_URLS = [
    "/api/v1/connections/%00/",
    "/api/v1/connections/%00/history/",
    "/api/v1/endpoints/%00/",
    "/settings/connections/%00/edit/",
    "/settings/connections/%00/delete/",
    "/settings/connections/%00/history/",
    "/settings/endpoints/%00/edit/",
    "/settings/endpoints/%00/delete/",
    "/settings/connections/method-fields/?provider=openai&connection=%00",
]


@pytest.mark.parametrize("url", NUL_NAME_URLS)
def test_a_nul_in_a_name_in_the_url_is_not_found(url, api, client, admin_user, make_connection):
    make_connection("openai-prod")
    client.force_login(admin_user)
    response = (api if url.startswith("/api/") else client).get(url)
    assert response.status_code == 404


def test_a_nul_in_the_preselected_connection_is_ignored(client, admin_user, make_connection):
    make_connection("openai-prod")
    client.force_login(admin_user)
    response = client.get("/settings/endpoints/new/?connection=openai-prod%00")
    assert response.status_code == 200
    assert response.context["destinations"].forms[0].initial.get("connection") is None


def test_a_nul_in_an_endpoints_connection_is_an_unknown_connection(api, make_connection):
    make_connection("openai-prod")
    response = api.post("/api/v1/endpoints/", {"name": "chat", "connection": "openai-prod\x00", "model": "gpt-4o-mini"},
                        format="json")
    assert response.status_code == 400
    assert "No object has this name" in response.json()["connection"][0]
