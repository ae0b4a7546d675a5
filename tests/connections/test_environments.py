"""Environments: each connection is development, staging or production, shown as a badge, filtered on the list
and in the API (connections and endpoints), recorded when changed; an endpoint does not mix production and
non-production connections unless it allows it."""

import pytest

from audit.models import AuditEntry
from connections.models import Connection, Environment, environments_mixed
from tests.api_support import ALL_API_PERMISSIONS, bearer_client, grant
from tests.web import login_with_perms

pytestmark = pytest.mark.django_db

LIST_URL = "/settings/connections/"


@pytest.fixture
def three_environments(make_connection, make_endpoint):
    dev = make_connection("openai-dev", environment="development")
    make_connection("openai-staging", environment="staging")
    prod = make_connection("openai-prod")
    make_endpoint("chat-dev", dev)
    make_endpoint("chat-prod", prod)


@pytest.fixture
def api(django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw-operator-123456")
    grant(user, *ALL_API_PERMISSIONS)
    return bearer_client(user)


def test_a_connection_without_a_stated_environment_is_production(make_connection):
    assert make_connection("openai-prod").environment == Environment.PRODUCTION


def test_the_list_shows_each_environment_as_a_badge(client, django_user_model, three_environments):
    login_with_perms(client, django_user_model, "connections.view_connection")

    page = client.get(LIST_URL).content.decode()

    assert 'openai-dev <span class="badge env-badge env-development">Development</span>' in page
    assert 'openai-staging <span class="badge env-badge env-staging">Staging</span>' in page
    assert 'openai-prod <span class="badge env-badge env-production">Production</span>' in page


def test_the_list_filters_by_environment_and_keeps_the_other_filter(client, django_user_model,
                                                                     three_environments):
    login_with_perms(client, django_user_model, "connections.view_connection")

    page = client.get(LIST_URL, {"environment": "staging"}).content.decode()

    assert page.count('<th scope="row" class="name">') == 1 and "openai-staging <span" in page
    assert 'href="?environment=staging&amp;rotation=overdue"' in page  # the rotation links keep the environment


def test_the_form_sets_the_environment_and_the_audit_log_names_the_field(admin_client, make_connection):
    make_connection("openai-prod")
    data = {"name": "openai-prod", "provider": "openai", "auth_method": "api_key", "selection": "openai/api_key",
            "description": "", "environment": "staging"}

    assert admin_client.post("/settings/connections/openai-prod/edit/", data).status_code == 302

    assert Connection.objects.get().environment == "staging"
    assert AuditEntry.objects.get(action=AuditEntry.Action.UPDATED).fields == ["environment"]


def test_the_api_returns_sets_and_filters_the_environment(api, three_environments):
    listed = api.get("/api/v1/connections/", {"environment": "development"}).json()
    patched = api.patch("/api/v1/connections/openai-staging/", {"environment": "production"}, format="json")
    refused = api.patch("/api/v1/connections/openai-staging/", {"environment": "qa"}, format="json")

    assert [item["name"] for item in listed["results"]] == ["openai-dev"]
    assert listed["results"][0]["environment"] == "development"
    assert patched.status_code == 200 and patched.json()["environment"] == "production"
    assert refused.status_code == 400 and "environment" in refused.json()


def test_endpoints_in_the_api_carry_their_connections_environment_and_filter_by_it(api, three_environments):
    listed = api.get("/api/v1/endpoints/", {"environment": "production"}).json()

    assert [(item["name"], item["environment"]) for item in listed["results"]] == [("chat-prod", "production")]


@pytest.mark.parametrize("environments, mixed", [
    (["production", "production"], False),
    (["development", "staging"], False),
    (["production", "staging"], True),
    (["development", "production", "production"], True),
    ([], False),
])
def test_production_and_non_production_count_as_mixed(environments, mixed):
    assert environments_mixed(environments) is mixed


def test_every_destination_counts_for_the_environment_rule_in_the_api(api, make_connection):
    make_connection("openai-prod")
    make_connection("openai-dev", environment="development")
    body = {"name": "chat", "task": "chat", "destinations": [
        {"connection": "openai-prod", "model": "gpt-4o-mini"},
        {"connection": "openai-dev", "model": "gpt-4o-mini", "role": "fallback"}]}

    refused = api.post("/api/v1/endpoints/", body, format="json")
    created = api.post("/api/v1/endpoints/", {**body, "allow_mixed_environments": True}, format="json")
    unmixed = api.patch("/api/v1/endpoints/chat/", {"allow_mixed_environments": False}, format="json")

    assert refused.status_code == 400 and "openai-dev (Development)" in refused.json()["destinations"][0]
    assert created.status_code == 201
    assert [d["environment"] for d in created.json()["destinations"]] == ["production", "development"]
    assert unmixed.status_code == 400 and "allow mixed environments" in unmixed.json()["destinations"][0]
    listed = api.get("/api/v1/endpoints/", {"environment": "development"}).json()
    assert [item["name"] for item in listed["results"]] == ["chat"]
