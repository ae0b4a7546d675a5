import json
from datetime import timedelta

import pytest
from django.utils import timezone

from providers import catalogue
from audit.models import AuditEntry
from connections.models import Connection
from tests.api_support import (  # noqa: F401 - fixtures
    ALL_API_PERMISSIONS, anonymous, api, assert_no_secret, bearer_client, make_user, operator,
)
from tests.conftest import PLANTED_KEY, bulk_endpoints
from teams.models import Team

pytestmark = pytest.mark.django_db

LIST = "/api/v1/connections/"
NEW_KEY = "sk-rotated-NEWKEY-9876543210-zyxwABCD"
AZURE_CONFIG = {"endpoint_url": "https://my-resource.openai.azure.com", "api_version": "2024-10-21"}


def detail(name: str) -> str:
    return f"{LIST}{name}/"


def body(**fields) -> dict:
    return {"name": "openai-prod", "provider": "openai", "auth_method": "api_key",
            "secrets": {"api_key": PLANTED_KEY}, **fields}


# --- Reading ----------------------------------------------------------------------------------------------


def test_it_lists_connections_with_masks_endpoints_and_users(api, operator, make_connection, make_endpoint):
    connection = make_connection(actor=operator)
    make_endpoint("chat-b", connection)
    make_endpoint("chat-a", connection)

    response = api.get(LIST)

    assert response.status_code == 200
    assert response.data["count"] == 1 and response.data["next"] is None and response.data["previous"] is None
    item = response.json()["results"][0]
    assert item == {
        "name": "openai-prod", "team": "default", "provider": "openai", "auth_method": "api_key",
        "environment": "production",
        "secrets": {"api_key": "sk-...WXYZ"}, "config": {}, "description": "",
        "endpoints": ["chat-a", "chat-b"],
        "created_at": item["created_at"], "updated_at": item["updated_at"],
        "secrets_updated_at": item["secrets_updated_at"], "last_used_at": None,
        "created_by": "operator", "updated_by": "operator",
        "key_max_age_days": None, "key_age_days": 0, "key_due_at": item["key_due_at"], "rotation_status": "ok",
    }
    assert_no_secret(response)


def test_it_shows_one_connection_by_name(api, make_connection):
    make_connection(name="azure-eu", auth_method="azure", config=AZURE_CONFIG)

    response = api.get(detail("azure-eu"))

    assert response.status_code == 200
    assert response.json()["config"] == AZURE_CONFIG
    assert response.json()["secrets"] == {"api_key": "sk-...WXYZ"}
    assert_no_secret(response)


def test_it_answers_404_for_an_unknown_name(api):
    for name in ("missing", "Ünïcödé", "a.b", "%00"):
        response = api.get(detail(name))
        assert response.status_code == 404, name


def test_it_shows_undecryptable_secrets_as_such(api, make_connection, use_keys):
    from cryptography.fernet import Fernet
    from django.conf import settings

    original = settings.FIELD_ENCRYPTION_KEY[0]
    use_keys(Fernet.generate_key().decode())
    make_connection()
    use_keys(original)

    listed = api.get(LIST)
    shown = api.get(detail("openai-prod"))
    edited = api.patch(detail("openai-prod"), {"description": "still editable"}, format="json")

    assert listed.status_code == shown.status_code == edited.status_code == 200
    assert shown.json()["secrets"] == {"api_key": "cannot be decrypted"}
    assert edited.json()["secrets"] == {"api_key": "cannot be decrypted"}


# --- Auth and permissions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method, path", [
    ("get", LIST), ("post", LIST), ("get", detail("openai-prod")), ("patch", detail("openai-prod")),
    ("put", detail("openai-prod")), ("delete", detail("openai-prod")), ("get", detail("openai-prod") + "history/"),
    ("get", "/api/v1/audit/"), ("get", "/api/v1/providers/"),
])
def test_it_answers_401_with_the_bearer_challenge_without_credentials(anonymous, make_connection, method, path):
    make_connection()

    response = getattr(anonymous, method)(path, {}, format="json")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert Connection.objects.filter(name="openai-prod").exists()


def test_it_answers_401_for_a_bad_token(anonymous):
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer llmc_not-a-real-token")

    response = anonymous.get(LIST)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("method, path, needed", [
    ("get", LIST, "view"), ("get", detail("openai-prod"), "view"), ("post", LIST, "add"),
    ("patch", detail("openai-prod"), "change"), ("put", detail("openai-prod"), "change"),
    ("delete", detail("openai-prod"), "delete"), ("get", detail("openai-prod") + "history/", "view"),
])
def test_it_answers_403_without_the_model_permission(make_user, make_connection, method, path, needed):
    make_connection()
    others = [p for p in ALL_API_PERMISSIONS if p != f"connections.{needed}_connection"]
    client = bearer_client(make_user("limited", *others))

    response = getattr(client, method)(path, body(name="other"), format="json")

    assert response.status_code == 403
    assert Connection.objects.get(name="openai-prod").secrets == {"api_key": PLANTED_KEY}


def test_history_and_audit_need_the_audit_permission(make_user, make_connection):
    make_connection()
    others = [p for p in ALL_API_PERMISSIONS if p != "audit.view_auditentry"]
    client = bearer_client(make_user("limited", *others))

    assert client.get(detail("openai-prod") + "history/").status_code == 403
    assert client.get("/api/v1/audit/").status_code == 403


def test_the_session_authenticates_too(client, operator, make_connection):
    make_connection()
    client.force_login(operator)

    response = client.get(LIST)

    assert response.status_code == 200
    assert response.json()["count"] == 1


# --- Creating ---------------------------------------------------------------------------------------------


def test_it_creates_a_connection_and_records_who(api, operator):
    response = api.post(LIST, body(description="Prod key", config={"organization": "org-1"}), format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["secrets"] == {"api_key": "sk-...WXYZ"}
    assert response.json()["created_by"] == response.json()["updated_by"] == "operator"
    assert_no_secret(response)
    connection = Connection.objects.get(name="openai-prod")
    assert connection.get_secrets() == {"api_key": PLANTED_KEY}
    assert connection.created_by == operator
    entry = AuditEntry.objects.get()
    assert (entry.action, entry.actor, entry.connection_name) == ("created", operator, "openai-prod")
    assert "secrets.api_key" in entry.fields and PLANTED_KEY not in json.dumps(entry.fields)


def test_it_creates_a_service_account_connection_from_an_object(api):
    key = {"type": "service_account", "client_email": "bot@proj.iam.gserviceaccount.com",
           "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE" + PLANTED_KEY}
    response = api.post(LIST, {"name": "vertex", "provider": "vertex_ai", "auth_method": "service_account",
                               "secrets": {"service_account_json": key}, "config": {"project_id": "my-project-1"}},
                        format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["secrets"] == {"service_account_json": "service account bot@proj.iam.gserviceaccount.com"}
    assert_no_secret(response)


def test_client_supplied_users_and_dates_are_ignored(api, make_user):
    make_user("mallory")
    response = api.post(LIST, body(created_by="mallory", updated_by="mallory", created_at="2000-01-01T00:00:00Z",
                                   endpoints=["x"]), format="json")

    assert response.status_code == 201
    assert response.json()["created_by"] == "operator"
    assert not response.json()["created_at"].startswith("2000")


@pytest.mark.parametrize("fields, errors", [
    ({"name": "OpenAI"}, {"name"}),
    ({"name": "ünïcode"}, {"name"}),
    ({"name": "x" * 65}, {"name"}),
    ({"name": ""}, {"name"}),
    ({"provider": "nope"}, {"provider"}),
    ({"auth_method": "nope"}, {"auth_method"}),
    ({"secrets": {}}, {"secrets": {"api_key"}}),
    ({"secrets": {"api_key": 12345}}, {"secrets": {"api_key"}}),
    ({"secrets": {"api_key": "x" * 20000}}, {"secrets": {"api_key"}}),
    ({"secrets": {"api_key": PLANTED_KEY, "extra": "v"}}, {"secrets": {"extra"}}),
    ({"secrets": ["list"]}, {"secrets"}),
    ({"secrets": "string"}, {"secrets"}),
    ({"config": ["a", "list"]}, {"config"}),
    ({"config": {"organization": 5}}, {"config": {"organization"}}),
    ({"config": {"organization": "a\x00b"}}, {"config"}),
    ({"config": {"unknown": "x"}}, {"config": {"unknown"}}),
    ({"auth_method": "azure", "config": {"endpoint_url": "http://169.254.169.254", "api_version": "2024-10-21"}},
     {"config": {"endpoint_url"}}),
    ({"auth_method": "azure", "config": {}}, {"config": {"endpoint_url", "api_version"}}),
    ({"description": "x" * 2001}, {"description"}),
    ({"description": ["not", "text"]}, {"description"}),
    ({"surprise": 1, "other": 2}, {"surprise", "other"}),
])
def test_it_refuses_invalid_input_naming_the_field(api, fields, errors):
    response = api.post(LIST, body(**fields), format="json")

    assert response.status_code == 400
    data = response.json()
    assert set(data) == set(errors)
    for key, nested in (errors.items() if isinstance(errors, dict) else ()):
        assert set(data[key]) == nested
    assert not Connection.objects.exists()
    assert_no_secret(response)


def test_it_refuses_a_duplicate_name(api, make_connection):
    make_connection()

    response = api.post(LIST, body(), format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"name"}


def test_it_refuses_an_echoed_mask_on_create(api):
    response = api.post(LIST, body(secrets={"api_key": "sk-...WXYZ"}), format="json")

    assert response.status_code == 400
    assert "masked" in response.json()["secrets"]["api_key"][0]


# --- Updating ---------------------------------------------------------------------------------------------


def test_patch_rotates_one_key_moving_the_mask_and_time(api, operator, make_connection):
    connection = make_connection()
    Connection.objects.filter(pk=connection.pk).update(secrets_updated_at=timezone.now() - timedelta(days=1))
    before = Connection.objects.get(pk=connection.pk).secrets_updated_at

    response = api.patch(detail("openai-prod"), {"secrets": {"api_key": NEW_KEY}}, format="json")

    assert response.status_code == 200, response.json()
    assert response.json()["secrets"] == {"api_key": "sk-...ABCD"}
    assert_no_secret(response, NEW_KEY)
    connection.refresh_from_db()
    assert connection.get_secrets() == {"api_key": NEW_KEY}
    assert connection.secrets_updated_at > before
    entry = AuditEntry.objects.first()
    assert (entry.action, entry.actor, entry.fields) == ("key_rotated", operator, ["secrets.api_key"])


def test_patch_merges_only_the_named_secret_fields(api, make_connection):
    make_connection(provider="bedrock", auth_method="access_key", config={"region": "us-east-1"},
                    secrets={"aws_access_key_id": "AKIA" + "A" * 16, "aws_secret_access_key": PLANTED_KEY})

    response = api.patch(detail("openai-prod"), {"secrets": {"aws_access_key_id": "AKIA" + "B" * 16}}, format="json")

    assert response.status_code == 200, response.json()
    assert Connection.objects.get().get_secrets() == {
        "aws_access_key_id": "AKIA" + "B" * 16, "aws_secret_access_key": PLANTED_KEY}


@pytest.mark.parametrize("payload", [{"secrets": {}}, {}, {"secrets": {"api_key": ""}}, {"secrets": {"api_key": None}}])
def test_empty_secrets_change_nothing(api, make_connection, payload):
    connection = make_connection()
    entries = AuditEntry.objects.count()

    response = api.patch(detail("openai-prod"), payload, format="json")

    assert response.status_code == 200
    after = Connection.objects.get()
    assert after.get_secrets() == {"api_key": PLANTED_KEY}
    assert after.secrets_updated_at == connection.secrets_updated_at
    assert AuditEntry.objects.count() == entries


def test_an_echoed_mask_never_overwrites_the_key(api, make_connection):
    make_connection()
    mask = api.get(detail("openai-prod")).json()["secrets"]["api_key"]

    response = api.patch(detail("openai-prod"), {"secrets": {"api_key": mask}}, format="json")

    assert response.status_code == 400
    assert list(response.json()["secrets"]) == ["api_key"]
    assert Connection.objects.get().get_secrets() == {"api_key": PLANTED_KEY}


def test_renaming_keeps_endpoints_attached(api, make_connection, make_endpoint):
    make_endpoint("chat", make_connection())

    response = api.patch(detail("openai-prod"), {"name": "openai-main"}, format="json")

    assert response.status_code == 200
    assert response.json()["endpoints"] == ["chat"]
    assert api.get("/api/v1/endpoints/chat/").json()["connection"] == "openai-main"
    assert api.get(detail("openai-prod")).status_code == 404


def test_changing_the_method_needs_the_new_secrets(api, make_connection):
    make_connection()

    refused = api.patch(detail("openai-prod"), {"auth_method": "azure", "config": AZURE_CONFIG}, format="json")
    accepted = api.patch(detail("openai-prod"), {"auth_method": "azure", "config": AZURE_CONFIG,
                                                 "secrets": {"api_key": NEW_KEY}}, format="json")

    assert refused.status_code == 400
    assert set(refused.json()) == {"secrets"} and set(refused.json()["secrets"]) == {"api_key"}
    assert accepted.status_code == 200, accepted.json()
    assert Connection.objects.get().get_secrets() == {"api_key": NEW_KEY}


def test_changing_the_provider_drops_the_old_secrets(api, make_connection):
    make_connection()

    response = api.patch(detail("openai-prod"), {"provider": "anthropic", "secrets": {"api_key": NEW_KEY}},
                         format="json")

    assert response.status_code == 200, response.json()
    connection = Connection.objects.get()
    assert (connection.provider, connection.get_secrets()) == ("anthropic", {"api_key": NEW_KEY})


def test_put_replaces_fields_and_merges_secrets(api, operator, make_connection):
    make_connection(description="old")

    response = api.put(detail("openai-prod"), {"name": "openai-prod", "provider": "openai", "auth_method": "api_key",
                                               "description": "new", "config": {"organization": "org-2"}},
                       format="json")

    assert response.status_code == 200, response.json()
    connection = Connection.objects.get()
    assert (connection.description, connection.config) == ("new", {"organization": "org-2"})
    assert connection.get_secrets() == {"api_key": PLANTED_KEY}
    assert connection.updated_by == operator
    assert set(AuditEntry.objects.first().fields) == {"config.organization", "description"}


def test_put_needs_every_required_field(api, make_connection):
    make_connection()

    response = api.put(detail("openai-prod"), {"description": "x"}, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"name", "provider", "auth_method"}


def test_update_errors_name_the_nested_field(api, make_connection):
    make_connection(name="azure", auth_method="azure", config=AZURE_CONFIG)

    response = api.patch(detail("azure"), {"config": {**AZURE_CONFIG, "endpoint_url": "http://10.0.0.1"}},
                         format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["config"] and list(response.json()["config"]) == ["endpoint_url"]


def test_updating_an_unknown_name_is_404(api):
    assert api.patch(detail("missing"), {"description": "x"}, format="json").status_code == 404
    assert api.put(detail("missing"), body(), format="json").status_code == 404
    assert api.delete(detail("missing")).status_code == 404


# --- Deleting ---------------------------------------------------------------------------------------------


def test_it_deletes_an_unused_connection_and_records_it(api, operator, make_connection):
    make_connection()

    response = api.delete(detail("openai-prod"))

    assert response.status_code == 204
    assert not Connection.objects.exists()
    entry = AuditEntry.objects.first()
    assert (entry.action, entry.actor, entry.connection_name) == ("deleted", operator, "openai-prod")


def test_it_refuses_to_delete_a_connection_in_use(api, make_connection, make_endpoint):
    connection = make_connection()
    make_endpoint("chat", connection, enabled=False)
    make_endpoint("another", connection)

    response = api.delete(detail("openai-prod"))

    assert response.status_code == 409
    assert response.json()["endpoints"] == ["another", "chat"]
    assert "another" in response.json()["detail"]
    assert Connection.objects.filter(pk=connection.pk).exists()
    assert not AuditEntry.objects.filter(action="deleted").exists()


# --- History, audit, providers ------------------------------------------------------------------------------


def test_history_lists_the_connections_entries_newest_first(api, operator, make_connection):
    make_connection(actor=operator)
    api.patch(detail("openai-prod"), {"secrets": {"api_key": NEW_KEY}}, format="json")
    make_connection(name="other")

    response = api.get(detail("openai-prod") + "history/")

    assert response.status_code == 200
    results = response.json()["results"]
    assert [entry["action"] for entry in results] == ["key_rotated", "created"]
    assert set(results[0]) == {"at", "actor", "action", "connection", "endpoint", "fields"}
    assert results[0]["actor"] == "operator" and results[0]["connection"] == "openai-prod"
    assert results[0]["fields"] == ["secrets.api_key"]
    assert_no_secret(response)
    assert_no_secret(response, NEW_KEY)
    assert api.get(detail("missing") + "history/").status_code == 404


def test_audit_keeps_entries_of_deleted_connections(api, make_connection):
    make_connection()
    api.delete(detail("openai-prod"))

    response = api.get("/api/v1/audit/")

    assert response.status_code == 200
    assert [(e["action"], e["connection"], e["actor"]) for e in response.json()["results"]] == [
        ("deleted", "openai-prod", "operator"), ("created", "openai-prod", "system")]
    assert api.get("/api/v1/audit/?action=deleted").json()["count"] == 1
    assert api.get("/api/v1/audit/?connection=openai-prod").json()["count"] == 2


def test_providers_lists_the_registry_unpaginated(api):
    response = api.get("/api/v1/providers/")

    assert response.status_code == 200
    data = response.json()
    assert [p["id"] for p in data] == [p.id for p in catalogue.PROVIDER_LIST]
    openai = data[0]
    assert set(openai) == {"id", "label", "tasks", "auth_methods"}
    assert openai["tasks"] == ["chat", "embeddings"]
    azure_ad = next(m for m in openai["auth_methods"] if m["id"] == "azure_ad")
    assert azure_ad["label"] == "Azure OpenAI (Entra ID)"
    assert azure_ad["secret_fields"] == [{"name": "client_secret", "label": "Client secret", "required": True}]
    assert {"name": "endpoint_url", "label": "Endpoint URL", "required": True, "default": ""} in azure_ad["config_fields"]
    vertex = next(p for p in data if p["id"] == "vertex_ai")["auth_methods"][0]
    assert {"name": "location", "label": "Location", "required": False, "default": "us-central1"} in vertex["config_fields"]


# --- Lists: pages, filters, ordering, query counts ----------------------------------------------------------


@pytest.fixture
def many_connections(operator):
    """200 connections (bulk-created, encrypted like any other) and 1000 endpoints, 5 per connection."""
    from endpoints.models import Endpoint

    rows, team = [], Team.objects.default()
    for number in range(200):
        connection = Connection(name=f"conn-{number:03d}", provider="openai" if number % 2 else "mistral", team=team,
                                auth_method="api_key", secrets={"api_key": PLANTED_KEY}, created_by=operator,
                                updated_by=operator, secrets_updated_at=timezone.now())
        rows.append(connection)
    Connection.objects.bulk_create(rows)
    connections = list(Connection.objects.all())
    bulk_endpoints((f"ep-{c.pk}-{i}", c, "m", "chat") for c in connections for i in range(5))
    return connections


def test_list_pages_hold_50_and_page_size_goes_up_to_500(api, many_connections):
    first = api.get(LIST).json()
    second = api.get(LIST, {"page": 2}).json()
    big = api.get(LIST, {"page_size": 1000}).json()

    assert (first["count"], len(first["results"])) == (200, 50)
    assert first["previous"] is None and "page=2" in first["next"]
    assert second["results"][0]["name"] == "conn-050" and second["previous"]
    assert len(big["results"]) == 200 and big["next"] is None
    assert api.get(LIST, {"page": 99}).status_code == 404


def test_list_filters_by_provider_and_orders(api, many_connections):
    Connection.objects.filter(name="conn-007").update(updated_at=timezone.now() + timedelta(hours=1))

    mistral = api.get(LIST, {"provider": "mistral", "page_size": 500}).json()
    newest = api.get(LIST, {"ordering": "-updated_at"}).json()
    by_name = api.get(LIST, {"ordering": "name"}).json()

    assert mistral["count"] == 100 and {c["provider"] for c in mistral["results"]} == {"mistral"}
    assert newest["results"][0]["name"] == "conn-007"
    assert by_name["results"][0]["name"] == "conn-000"
    assert api.get(LIST, {"provider": "nope"}).status_code == 400


def test_a_key_rotation_costs_the_same_few_queries_however_many_endpoints(api, many_connections,
                                                                      django_assert_num_queries):
    api.get(LIST)  # the token's first use records last_used_at

    # token+user, user perms, group perms, savepoint, the row locked, UPDATE, audit INSERT, the endpoints for
    # the answer, release. Not: a unique check of the unchanged name, a lookup of the creator and the last
    # editor, a prefetch before the save, a savepoint of the save's own.
    with django_assert_num_queries(9):
        response = api.patch(detail("conn-001"), {"secrets": {"api_key": "sk-rotated-0123456789abcdef"}},
                             format="json")

    assert response.status_code == 200 and len(response.json()["endpoints"]) == 5
    assert Connection.objects.get(name="conn-001").get_secrets() == {"api_key": "sk-rotated-0123456789abcdef"}


def test_list_query_count_is_constant(api, many_connections, django_assert_num_queries):
    api.get(LIST)  # the token's first use records last_used_at (one UPDATE); later requests do not write

    # token+user, user perms, group perms, connections+users (join) with their count, endpoints
    with django_assert_num_queries(5):
        response = api.get(LIST, {"page_size": 500})

    assert len(response.json()["results"]) == 200
    assert all(len(item["endpoints"]) == 5 for item in response.json()["results"])
    assert_no_secret(response)


def test_history_and_audit_query_counts_are_constant(api, make_connection, django_assert_num_queries):
    connection = make_connection()
    for number in range(60):
        connection.description = f"v{number}"
        from connections.services import connection_save
        connection_save(connection=connection, actor=None)
    api.get("/api/v1/audit/")

    # token+user, user perms, group perms, count, entries
    with django_assert_num_queries(5):
        assert len(api.get("/api/v1/audit/", {"page_size": 500}).json()["results"]) == 61
    # token+user, user perms, group perms, connection (+ prefetched endpoints), count, entries
    with django_assert_num_queries(7):
        assert len(api.get(detail("openai-prod") + "history/", {"page_size": 500}).json()["results"]) == 61
