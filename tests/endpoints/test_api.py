import pytest

from audit.models import AuditEntry
from endpoints.models import Destination, Endpoint
from tests.conftest import bulk_endpoints
from teams.models import Team
from tests.api_support import (  # noqa: F401 - fixtures
    ALL_API_PERMISSIONS, anonymous, api, assert_no_secret, bearer_client, make_user, operator,
)

pytestmark = pytest.mark.django_db

LIST = "/api/v1/endpoints/"


def detail(name: str) -> str:
    return f"{LIST}{name}/"


@pytest.fixture
def openai(make_connection):
    return make_connection()


@pytest.fixture
def chat(openai, make_endpoint):
    return make_endpoint("chat", openai)


ONE = [{"connection": "openai-prod", "provider": "openai", "environment": "production", "model": "gpt-4o-mini",
        "role": "primary", "weight": 100, "cooling_until": None}]


def test_it_lists_endpoints_with_their_destinations(api, chat):
    response = api.get(LIST)

    assert response.status_code == 200
    item = response.json()["results"][0]
    assert item == {"name": "chat", "team": "default", "connection": "openai-prod", "provider": "openai", "environment": "production",
                    "model": "gpt-4o-mini", "task": "chat", "enabled": True, "destinations": ONE,
                    "fallback_on": ["connection_error", "timeout", "rate_limited", "server_error"],
                    "deadline_seconds": 120, "allow_mixed_environments": False, "requests_per_minute": None,
                    "token_budget": None, "budget_period": "month",
                    "created_at": item["created_at"], "updated_at": item["updated_at"]}
    assert_no_secret(response)


def test_it_shows_one_endpoint(api, chat):
    response = api.get(detail("chat"))

    assert response.status_code == 200
    assert response.json()["destinations"] == ONE
    assert api.get(detail("missing")).status_code == 404


def test_it_creates_an_endpoint_from_the_connection_and_model_shorthand(api, openai):
    response = api.post(LIST, {"name": "embed", "connection": "openai-prod", "model": "text-embedding-3-small",
                               "task": "embeddings"}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["destinations"][0]["provider"] == "openai" and response.json()["enabled"] is True
    assert Endpoint.objects.get(name="embed").destinations.get().connection == openai


def test_it_creates_a_split_with_fallbacks_and_audits_field_names(api, openai, make_connection):
    make_connection("azure-prod")
    make_connection("claude", provider="anthropic")
    body = {"name": "chat", "task": "chat", "fallback_on": ["rate_limited", "credentials_refused"],
            "deadline_seconds": 30, "destinations": [
                {"connection": "openai-prod", "model": "gpt-4o", "weight": 70},
                {"connection": "azure-prod", "model": "gpt-4o", "weight": 30},
                {"connection": "claude", "model": "claude-3-5-haiku", "role": "fallback"},
            ]}

    response = api.post(LIST, body, format="json")

    assert response.status_code == 201, response.json()
    assert [(d["connection"], d["role"], d["weight"]) for d in response.json()["destinations"]] == [
        ("openai-prod", "primary", 70), ("azure-prod", "primary", 30), ("claude", "fallback", None)]
    assert response.json()["fallback_on"] == ["rate_limited", "credentials_refused"]
    assert api.get(detail("chat")).json()["destinations"] == response.json()["destinations"]
    entry = AuditEntry.objects.get(subject_type="endpoint")
    assert entry.action == "created" and "destinations" in entry.fields


@pytest.mark.parametrize(("destinations", "expected"), [
    ([], {"destinations": ["Add at least one primary destination."]}),
    ([{"connection": "openai-prod", "model": "m", "weight": 60}],
     {"destinations": ["The primary destinations' weights add up to 60; they must add up to 100."]}),
    ([{"connection": "openai-prod", "model": "m", "weight": 100}, {"connection": "nope", "model": "m"}],
     {"destinations": {"1": {"connection": ["Object with name=nope does not exist."]}}}),
    ([{"connection": "openai-prod", "model": "m", "weight": 100, "colour": "red"}],
     {"destinations": {"0": {"colour": ["Unknown field 'colour'."]}}}),
    ([{"connection": "openai-prod", "model": "m", "weight": 100},
      {"connection": "openai-prod", "model": "m", "role": "fallback"},
      {"connection": "openai-prod", "model": "m", "role": "fallback"}],
     {"destinations": ["openai-prod/m is listed twice as a fallback destination."]}),
])
def test_it_refuses_bad_destinations_naming_the_problem(api, openai, destinations, expected):
    response = api.post(LIST, {"name": "e1", "destinations": destinations}, format="json")

    assert response.status_code == 400
    assert response.json() == expected
    assert not Endpoint.objects.exists()


def test_a_patch_replaces_the_destinations_and_a_patch_without_them_keeps_them(api, chat, make_connection):
    make_connection("backup")
    replaced = api.patch(detail("chat"), {"destinations": [
        {"connection": "openai-prod", "model": "gpt-4o-mini"}, {"connection": "backup", "model": "gpt-4o-mini",
                                                                 "role": "fallback"}]}, format="json")
    kept = api.patch(detail("chat"), {"enabled": False}, format="json")

    assert replaced.status_code == 200, replaced.json()
    assert [d["connection"] for d in kept.json()["destinations"]] == ["openai-prod", "backup"]
    assert kept.json()["enabled"] is False
    # The one-destination shorthand cannot half-replace a list of several.
    assert list(api.patch(detail("chat"), {"model": "gpt-4o"}, format="json").json()) == ["connection"]


def test_a_patch_of_the_connection_alone_moves_a_one_destination_endpoint(api, chat, make_connection):
    make_connection("other")
    response = api.patch(detail("chat"), {"connection": "other"}, format="json")

    assert response.status_code == 200, response.json()
    assert (response.json()["connection"], response.json()["model"]) == ("other", "gpt-4o-mini")
    assert [d["connection"] for d in response.json()["destinations"]] == ["other"]


@pytest.mark.parametrize("fields, field", [
    ({"name": "Chat"}, "name"),
    ({"name": "日本語"}, "name"),
    ({"connection": "missing"}, "connection"),
    ({"connection": 5}, "connection"),
    ({"connection": ["openai-prod"]}, "connection"),
    ({"task": "images"}, "task"),
    ({"model": ""}, "model"),
    ({"enabled": "maybe"}, "enabled"),
    ({"fallback_on": ["everything"]}, "fallback_on"),
    ({"deadline_seconds": 0}, "deadline_seconds"),
    ({"created_at": "2020-01-01T00:00:00Z"}, None),  # read-only: ignored
    ({"provider": "anthropic"}, None),  # read-only: ignored
    ({"bogus": True}, "bogus"),
])
def test_it_refuses_invalid_input_naming_the_field(api, openai, fields, field):
    response = api.post(LIST, {"name": "e1", "connection": "openai-prod", "model": "m", "task": "chat", **fields},
                        format="json")

    if field is None:
        assert response.status_code == 201
        assert response.json()["destinations"][0]["provider"] == "openai"
    else:
        assert response.status_code == 400
        assert list(response.json()) == [field]


def test_it_refuses_a_task_the_provider_lacks(api, make_connection):
    make_connection(name="claude", provider="anthropic")

    response = api.post(LIST, {"name": "e1", "connection": "claude", "model": "claude-3", "task": "embeddings"},
                        format="json")

    assert response.status_code == 400
    error = response.json()["destinations"]["0"]["connection"][0]
    assert "Anthropic does not support embeddings (connection claude)" in error


def test_it_updates_with_patch_and_put(api, chat, make_connection):
    make_connection(name="mistral", provider="mistral")

    patched = api.patch(detail("chat"), {"enabled": False}, format="json")
    put = api.put(detail("chat"), {"name": "chat2", "connection": "mistral", "model": "mistral-small",
                                   "task": "chat"}, format="json")

    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert put.status_code == 200, put.json()
    assert put.json()["destinations"][0]["provider"] == "mistral"
    assert Endpoint.objects.get().name == "chat2"
    assert api.patch(detail("missing"), {"enabled": False}, format="json").status_code == 404


def test_moving_to_a_connection_whose_provider_lacks_the_task_is_refused(api, openai, make_endpoint, make_connection):
    make_endpoint("embed", openai, model="text-embedding-3-small", task="embeddings")
    make_connection(name="claude", provider="anthropic")

    response = api.patch(detail("embed"), {"connection": "claude"}, format="json")
    changed_task = api.patch(detail("embed"), {"task": "chat"}, format="json")

    assert response.status_code == 400 and list(response.json()) == ["destinations"]
    assert Endpoint.objects.get().destinations.get().connection == openai
    assert changed_task.status_code == 200  # OpenAI serves chat too


def test_it_deletes_an_endpoint(api, chat):
    assert api.delete(detail("chat")).status_code == 204
    assert not Endpoint.objects.exists()
    assert api.delete(detail("chat")).status_code == 404


@pytest.mark.parametrize("method", ["get", "post", "patch", "put", "delete"])
def test_it_answers_401_with_the_bearer_challenge(anonymous, chat, method):
    path = LIST if method == "post" else detail("chat")

    response = getattr(anonymous, method)(path, {}, format="json")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("method, path, needed", [
    ("get", LIST, "view"), ("get", detail("chat"), "view"), ("post", LIST, "add"),
    ("patch", detail("chat"), "change"), ("put", detail("chat"), "change"), ("delete", detail("chat"), "delete"),
])
def test_it_answers_403_without_the_model_permission(make_user, chat, method, path, needed):
    others = [p for p in ALL_API_PERMISSIONS if p != f"endpoints.{needed}_endpoint"]
    client = bearer_client(make_user("limited", *others))

    response = getattr(client, method)(path, {"name": "e2", "connection": "openai-prod", "model": "m"}, format="json")

    assert response.status_code == 403
    assert list(Endpoint.objects.values_list("name", "enabled")) == [("chat", True)]


def test_list_filters_and_orders(api, openai, make_connection, make_endpoint):
    mistral = make_connection(name="mistral", provider="mistral")
    make_endpoint("b-openai", openai)
    make_endpoint("a-mistral", mistral, model="mistral-small")

    assert [e["name"] for e in api.get(LIST, {"provider": "mistral"}).json()["results"]] == ["a-mistral"]
    assert [e["name"] for e in api.get(LIST, {"connection": "openai-prod"}).json()["results"]] == ["b-openai"]
    assert [e["name"] for e in api.get(LIST, {"ordering": "-updated_at"}).json()["results"]] == ["a-mistral", "b-openai"]
    assert [e["name"] for e in api.get(LIST, {"ordering": "name"}).json()["results"]] == ["a-mistral", "b-openai"]


def test_list_query_count_is_constant(api, operator, django_assert_num_queries):
    from connections.models import Connection

    Connection.objects.bulk_create(
        Connection(name=f"conn-{n:03d}", provider="openai", auth_method="api_key", secrets={"api_key": "k" * 30},
                   team=Team.objects.default())
        for n in range(200)
    )
    bulk_endpoints((f"ep-{c.pk}-{i}", c, "m", "chat") for c in Connection.objects.all() for i in range(5))
    api.get(LIST)  # the token's first use records last_used_at

    # token+user, user perms, group perms, endpoints with their count, their destinations joined with their
    # connections
    with django_assert_num_queries(5):
        response = api.get(LIST, {"page_size": 500})

    assert response.json()["count"] == 1000 and len(response.json()["results"]) == 500


def test_an_endpoints_limits_are_set_through_the_api_and_audited(api, chat):
    patched = api.patch(f"{LIST}chat/", {"requests_per_minute": 120, "token_budget": 5000000,
                                         "budget_period": "day"}, format="json")
    refused = api.patch(f"{LIST}chat/", {"requests_per_minute": 0, "budget_period": "week"}, format="json")

    assert patched.status_code == 200
    assert (patched.json()["requests_per_minute"], patched.json()["token_budget"]) == (120, 5000000)
    assert refused.status_code == 400 and set(refused.json()) == {"requests_per_minute", "budget_period"}
    from audit.models import AuditEntry

    entry = AuditEntry.objects.filter(subject_type="endpoint", action="updated").get()
    assert entry.fields == ["requests_per_minute", "token_budget", "budget_period"]
