"""Scoped tokens: limited to some endpoints on the gateway (403, OpenAI-shaped), to reading the API, or to the
gateway only; set on the Tokens page or with create_api_token, and named in the audit log."""

import json
import re
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from audit.models import AuditEntry
from tests.api_support import ALL_API_PERMISSIONS, grant
from tests.asgi_client import AsgiClient
from tests.provider_fixtures import CHAT_BODY
from tokens.models import ApiToken, Scope, hash_token

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(django_user_model):
    user = django_user_model.objects.create_user("operator", password="pw-operator-123456")
    grant(user, *ALL_API_PERMISSIONS)
    return user


@pytest.fixture
def two_endpoints(openai_chat, make_endpoint):
    return openai_chat, make_endpoint("chat-other", openai_chat.destinations.get().connection)


def gateway_as(plaintext: str) -> AsgiClient:
    return AsgiClient(HTTP_AUTHORIZATION=f"Bearer {plaintext}")


def api_as(plaintext: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    return client


def chat(client, model: str):
    return client.post("/gateway/v1/chat/completions", json.dumps({**CHAT_BODY, "model": model}),
                       content_type="application/json")


def error_of(response) -> dict:
    document = response.json()
    assert set(document) == {"error"} and set(document["error"]) == {"message", "type", "code"}
    return document["error"]


# --- Limited to some endpoints ----------------------------------------------------------------------------


def test_a_token_limited_to_endpoints_calls_those_and_is_refused_the_others(operator, two_endpoints, fake_openai):
    chat_endpoint, other = two_endpoints
    _, plaintext = ApiToken.issue(user=operator, endpoints=[chat_endpoint])
    gateway = gateway_as(plaintext)

    allowed = chat(gateway, "chat")
    refused = chat(gateway, "chat-other")
    invocation = gateway.post("/gateway/chat-other/invocations", json.dumps({"messages": CHAT_BODY["messages"]}),
                              content_type="application/json")

    assert allowed.status_code == 200
    assert refused.status_code == 403 and invocation.status_code == 403
    assert error_of(refused) == {"message": "This token may not call endpoint 'chat-other'.",
                                 "type": "permission_error", "code": "endpoint_not_allowed"}
    assert len(fake_openai.requests) == 1  # the refused calls never reached the provider


def test_models_lists_only_the_endpoints_a_limited_token_may_call(operator, two_endpoints):
    _, limited = ApiToken.issue(user=operator, endpoints=[two_endpoints[1]])
    _, unlimited = ApiToken.issue(user=operator)

    assert [m["id"] for m in gateway_as(limited).get("/gateway/v1/models").json()["data"]] == ["chat-other"]
    assert [m["id"] for m in gateway_as(unlimited).get("/gateway/v1/models").json()["data"]] == ["chat", "chat-other"]


def test_an_unknown_endpoint_is_still_a_404_for_a_limited_token(operator, two_endpoints):
    _, plaintext = ApiToken.issue(user=operator, endpoints=[two_endpoints[0]])

    assert error_of(chat(gateway_as(plaintext), "nope"))["code"] == "endpoint_not_found"


def test_a_limited_call_costs_one_query_more_than_an_unlimited_one(operator, two_endpoints,
                                                                     django_assert_max_num_queries):
    _, plaintext = ApiToken.issue(user=operator, endpoints=[two_endpoints[0]])
    gateway = gateway_as(plaintext)
    chat(gateway, "chat")  # last used written once

    with django_assert_max_num_queries(4):  # the caller, the endpoint with its connection, the token's list
        assert chat(gateway, "chat").status_code == 200


# --- Read-only and gateway-only ----------------------------------------------------------------------------


def test_a_read_only_token_reads_the_api_but_writes_nothing_and_calls_no_endpoint(operator, openai_chat,
                                                                                 fake_openai):
    _, plaintext = ApiToken.issue(user=operator, scope=Scope.READ_ONLY)
    api = api_as(plaintext)

    listed = api.get("/api/v1/connections/")
    patched = api.patch("/api/v1/connections/openai-prod/", {"description": "changed"}, format="json")
    deleted = api.delete("/api/v1/endpoints/chat/")
    called = chat(gateway_as(plaintext), "chat")

    assert listed.status_code == 200 and listed.json()["count"] == 1
    assert patched.status_code == 403 and "read-only" in patched.json()["detail"]
    assert deleted.status_code == 403
    assert called.status_code == 403 and error_of(called)["code"] == "token_scope"
    assert fake_openai.requests == []
    openai_chat.destinations.get().connection.refresh_from_db()
    assert openai_chat.destinations.get().connection.description == ""


def test_a_gateway_only_token_calls_endpoints_and_is_refused_by_the_api(operator, openai_chat):
    _, plaintext = ApiToken.issue(user=operator, scope=Scope.GATEWAY)

    read = api_as(plaintext).get("/api/v1/connections/")

    assert read.status_code == 403 and read.json() == {"detail": "This token is for the gateway only."}
    assert chat(gateway_as(plaintext), "chat").status_code == 200


# --- Issuing them ------------------------------------------------------------------------------------------


def test_the_tokens_page_issues_a_scoped_token_limited_to_endpoints(client, operator, two_endpoints):
    client.force_login(operator)
    form = client.get("/settings/tokens/").content.decode()
    assert 'name="scope"' in form and "chat-other</option>" in form

    response = client.post("/settings/tokens/", {"scope": "gateway", "endpoints": [two_endpoints[1].pk]})

    plaintext = re.search(r"llmc_[A-Za-z0-9_-]{40,}", response.content.decode()).group(0)
    token = ApiToken.objects.get(key_hash=hash_token(plaintext))
    assert token.scope == Scope.GATEWAY and list(token.endpoints.all()) == [two_endpoints[1]]
    page = client.get("/settings/tokens/").content.decode()
    assert "Gateway only" in page and "endpoints: chat-other" in page
    entry = AuditEntry.objects.get(action=AuditEntry.Action.TOKEN_CREATED)
    assert entry.fields[2:] == ["scope gateway", "endpoints chat-other"]


def test_create_api_token_takes_a_scope_and_endpoints(operator, two_endpoints):
    out = StringIO()

    call_command("create_api_token", "operator", "--scope", "gateway", "--endpoint", "chat", "--endpoint",
                 "chat-other", stdout=out)

    token = ApiToken.objects.get(key_hash=hash_token(out.getvalue().strip()))
    assert token.scope == Scope.GATEWAY
    assert sorted(token.endpoints.values_list("name", flat=True)) == ["chat", "chat-other"]


def test_create_api_token_refuses_an_unknown_endpoint(operator, two_endpoints):
    with pytest.raises(CommandError, match="No endpoint named 'nope'"):
        call_command("create_api_token", "operator", "--endpoint", "nope", stdout=StringIO())
    assert not ApiToken.objects.exists()


# --- Limits set where tokens are issued --------------------------------------------------------------------


def test_the_tokens_page_issues_a_token_with_a_rate_and_a_budget(client, operator):
    client.force_login(operator)

    response = client.post("/settings/tokens/", {"requests_per_minute": "60", "token_budget": "100000",
                                                 "budget_period": "day"})

    token = ApiToken.objects.get()
    assert (token.requests_per_minute, token.token_budget, token.budget_period) == (60, 100000, "day")
    assert "limits: 60/min · 100,000 tokens per day" in client.get("/settings/tokens/").content.decode()
    assert AuditEntry.objects.get().fields[-1] == "limits 60/min · 100,000 tokens per day"
    assert response.status_code == 200


def test_the_tokens_page_refuses_a_limit_below_1(client, operator):
    client.force_login(operator)

    response = client.post("/settings/tokens/", {"requests_per_minute": "0"})

    assert response.status_code == 400 and not ApiToken.objects.exists()


def test_create_api_token_takes_a_rate_and_a_budget(operator):
    out = StringIO()

    call_command("create_api_token", "operator", "--requests-per-minute", "5", "--token-budget", "1000",
                 "--budget-period", "day", stdout=out)

    token = ApiToken.objects.get(key_hash=hash_token(out.getvalue().strip()))
    assert (token.requests_per_minute, token.token_budget, token.budget_period) == (5, 1000, "day")


def test_create_api_token_refuses_a_rate_of_0(operator):
    with pytest.raises(CommandError):
        call_command("create_api_token", "operator", "--requests-per-minute", "0", stdout=StringIO(),
                     stderr=StringIO())
    assert not ApiToken.objects.exists()


def test_the_tokens_page_names_no_endpoint_to_a_user_who_may_not_see_endpoints(client, django_user_model,
                                                                             two_endpoints):
    client.force_login(django_user_model.objects.create_user("bob", password="pw-bob-123456"))

    page = client.get("/settings/tokens/").content.decode()
    created = client.post("/settings/tokens/", {"scope": "read_only", "endpoints": [two_endpoints[0].pk]})

    assert "chat-other" not in page and 'name="endpoints"' not in page
    assert created.status_code == 200 and not ApiToken.objects.get().endpoints.exists()
