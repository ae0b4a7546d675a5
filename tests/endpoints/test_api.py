import pytest

from endpoints.models import Endpoint
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


def test_it_lists_endpoints_with_connection_name_and_provider(api, chat):
    response = api.get(LIST)

    assert response.status_code == 200
    item = response.json()["results"][0]
    assert item == {"name": "chat", "connection": "openai-prod", "provider": "openai", "environment": "production",
                    "model": "gpt-4o-mini", "task": "chat", "enabled": True, "allow_mixed_environments": False,
                    "requests_per_minute": None, "token_budget": None,
                    "budget_period": "month", "created_at": item["created_at"], "updated_at": item["updated_at"]}
    assert_no_secret(response)


def test_it_shows_one_endpoint(api, chat):
    response = api.get(detail("chat"))

    assert response.status_code == 200
    assert response.json()["connection"] == "openai-prod"
    assert api.get(detail("missing")).status_code == 404


def test_it_creates_an_endpoint(api, openai):
    response = api.post(LIST, {"name": "embed", "connection": "openai-prod", "model": "text-embedding-3-small",
                               "task": "embeddings"}, format="json")

    assert response.status_code == 201, response.json()
    assert response.json()["provider"] == "openai" and response.json()["enabled"] is True
    assert Endpoint.objects.get(name="embed").connection == openai


@pytest.mark.parametrize("fields, field", [
    ({"name": "Chat"}, "name"),
    ({"name": "日本語"}, "name"),
    ({"connection": "missing"}, "connection"),
    ({"connection": 5}, "connection"),
    ({"connection": ["openai-prod"]}, "connection"),
    ({"task": "images"}, "task"),
    ({"model": ""}, "model"),
    ({"enabled": "maybe"}, "enabled"),
    ({"provider": "anthropic"}, None),  # read-only: ignored
    ({"bogus": True}, "bogus"),
])
def test_it_refuses_invalid_input_naming_the_field(api, openai, fields, field):
    response = api.post(LIST, {"name": "e1", "connection": "openai-prod", "model": "m", "task": "chat", **fields},
                        format="json")

    if field is None:
        assert response.status_code == 201
        assert response.json()["provider"] == "openai"
    else:
        assert response.status_code == 400
        assert list(response.json()) == [field]


def test_it_refuses_a_task_the_provider_lacks(api, make_connection):
    make_connection(name="claude", provider="anthropic")

    response = api.post(LIST, {"name": "e1", "connection": "claude", "model": "claude-3", "task": "embeddings"},
                        format="json")

    assert response.status_code == 400
    assert "Anthropic does not support embeddings" in response.json()["task"][0]


def test_it_updates_with_patch_and_put(api, chat, make_connection):
    make_connection(name="mistral", provider="mistral")

    patched = api.patch(detail("chat"), {"enabled": False}, format="json")
    put = api.put(detail("chat"), {"name": "chat2", "connection": "mistral", "model": "mistral-small",
                                   "task": "chat"}, format="json")

    assert patched.status_code == 200 and patched.json()["enabled"] is False
    assert put.status_code == 200, put.json()
    assert put.json()["provider"] == "mistral"
    assert Endpoint.objects.get().name == "chat2"
    assert api.patch(detail("missing"), {"enabled": False}, format="json").status_code == 404


def test_moving_to_a_connection_whose_provider_lacks_the_task_is_refused(api, openai, make_endpoint, make_connection):
    make_endpoint("embed", openai, model="text-embedding-3-small", task="embeddings")
    make_connection(name="claude", provider="anthropic")

    response = api.patch(detail("embed"), {"connection": "claude"}, format="json")

    assert response.status_code == 400 and list(response.json()) == ["task"]
    assert Endpoint.objects.get().connection == openai


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
        Connection(name=f"conn-{n:03d}", provider="openai", auth_method="api_key", secrets={"api_key": "k" * 30})
        for n in range(200)
    )
    Endpoint.objects.bulk_create(
        Endpoint(name=f"ep-{c.pk}-{i}", connection=c, model="m") for c in Connection.objects.all() for i in range(5)
    )
    api.get(LIST)  # the token's first use records last_used_at

    # token+user, user perms, group perms, count, endpoints joined with their connections
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
