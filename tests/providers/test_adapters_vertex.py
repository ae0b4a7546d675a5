"""The Vertex AI adapter against a fake token service and a fake Vertex AI: tokens, caching, translation, errors."""

import json
import logging
import threading

import pytest
from rest_framework.test import APIClient

from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Endpoint
from providers.account import Account
from providers.adapters import adapter_for
from providers.adapters.vertex_ai import VertexAIAdapter, access_token
from providers.catalogue import PROVIDERS
from providers.oauth import TOKENS
from providers.errors import GatewayError
from tests.conftest import PLANTED_KEY
from tests.fakes.google_token import make_service_account
from tests.fakes.server import closed_port
from tests.gateway.test_views import error_of, post
from tests.provider_calls import run
from tests.provider_calls import gather, run

pytestmark = pytest.mark.django_db

CHAT = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello"}]}
MODEL_PATH = "/v1/projects/my-project-123/locations/europe-west4/publishers/google/models"


def invoke(endpoint: Endpoint, body: dict):
    endpoint = Endpoint.objects.prefetch_related("destinations__connection").get(pk=endpoint.pk)
    return run(adapter_for(endpoint.destinations.get().connection.provider).invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, body))


def key_fragments(info: dict) -> list[str]:
    """Pieces of the service account's secrets that must never show: the planted id and lines of the key."""
    lines = [line for line in info["private_key"].splitlines() if "PRIVATE KEY" not in line]
    return [PLANTED_KEY, lines[1], lines[-1]]


@pytest.fixture
def api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


# --- Calls ----------------------------------------------------------------------------------------------


def test_chat_goes_to_generate_content_with_an_access_token_from_the_key(vertex_chat, fake_vertex, fake_google_token):
    answer = invoke(vertex_chat, CHAT)

    [grant] = fake_google_token.requests
    assert (grant.method, grant.path) == ("POST", "/token")
    [request] = fake_vertex.requests
    assert (request.method, request.path) == ("POST", f"{MODEL_PATH}/gemini-2.0-flash:generateContent")
    token = request.headers["authorization"].removeprefix("Bearer ")
    assert fake_google_token.valid(token)
    assert request.json() == {"contents": [{"role": "user", "parts": [{"text": "Say hello"}]}],
                              "systemInstruction": {"parts": [{"text": "Be brief."}]}}
    assert answer["choices"][0]["message"]["content"] == "Hello from Gemini"
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_embeddings_go_to_predict_with_instances(make_endpoint, vertex_connection, fake_vertex):
    endpoint = make_endpoint("vertex-embed", vertex_connection, model="text-embedding-005", task="embeddings")

    answer = invoke(endpoint, {"input": ["one", "two"], "dimensions": 2})

    [request] = fake_vertex.requests
    assert request.path == f"{MODEL_PATH}/text-embedding-005:predict"
    assert request.json() == {"instances": [{"content": "one"}, {"content": "two"}],
                              "parameters": {"outputDimensionality": 2}}
    assert [item["embedding"] for item in answer["data"]] == [[0.25, 0.0], [0.25, 1.0]]
    assert answer["usage"] == {"prompt_tokens": 4, "completion_tokens": 0, "total_tokens": 4}
    invoke(endpoint, {"input": "solo"})
    assert fake_vertex.requests[-1].json() == {"instances": [{"content": "solo"}]}


def test_a_stream_is_translated_as_it_arrives(vertex_chat, fake_vertex):
    fake_vertex.stream_gate = threading.Event()
    stream = iter(invoke(vertex_chat, {**CHAT, "stream": True}))

    received = b""
    while b'"Hel"' not in received:
        received += next(stream)
    assert b"Gemini" not in received
    fake_vertex.stream_gate.set()
    received += b"".join(stream)

    request = fake_vertex.requests[0]
    assert request.path == f"{MODEL_PATH}/gemini-2.0-flash:streamGenerateContent"
    assert request.query == {"alt": ["sse"]}
    events = [line[6:] for line in received.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event)["choices"][0] for event in events[:-1]]
    assert chunks[0]["delta"]["role"] == "assistant"
    assert "".join(c["delta"].get("content") or "" for c in chunks) == "Hello from Gemini"
    assert chunks[-1]["finish_reason"] == "stop"


def test_the_default_address_follows_the_location():
    provider = PROVIDERS["vertex_ai"]
    method = provider.auth_method("service_account")
    regional = Account("r", provider, method, secrets={}, config={"project_id": "my-project-123"})
    global_ = Account("g", provider, method, secrets={}, config={"project_id": "my-project-123", "location": "global"})

    assert regional.base_url() == "https://us-central1-aiplatform.googleapis.com"
    assert global_.base_url() == "https://aiplatform.googleapis.com"


def test_the_registry_names_the_vertex_adapter():
    assert isinstance(adapter_for("vertex_ai"), VertexAIAdapter)


# --- Tokens ---------------------------------------------------------------------------------------------


def test_many_calls_obtain_one_token(vertex_chat, fake_vertex, fake_google_token):
    for _ in range(5):
        invoke(vertex_chat, CHAT)

    assert fake_google_token.issued_count == 1
    assert len({r.headers["authorization"] for r in fake_vertex.requests}) == 1


def test_concurrent_first_calls_obtain_one_token(vertex_connection, service_account, fake_google_token):
    account = vertex_connection.account()

    results = run(gather(*(access_token(account) for _ in range(8))))

    assert len(results) == 8 and len(set(results)) == 1
    assert fake_google_token.issued_count == 1


def test_a_rotated_service_account_key_obtains_a_new_token_at_once(
    vertex_chat, fake_vertex, fake_google_token, admin_user
):
    invoke(vertex_chat, CHAT)
    new_key = make_service_account(fake_google_token.token_uri, private_key_id="fedcba9876543210fedcba9876543210")
    fake_google_token.revoke_all()  # the old key is deleted in GCP: only the new one works
    fake_google_token.accept(new_key)
    connection = Connection.objects.get(name="vertex-prod")
    connection.update_secrets({"service_account_json": new_key})
    connection.full_clean()
    connection_save(connection=connection, actor=admin_user)

    invoke(vertex_chat, CHAT)

    assert fake_google_token.issued_count == 2
    first, second = (r.headers["authorization"] for r in fake_vertex.requests)
    assert first != second


def test_a_token_the_provider_refuses_is_dropped_so_the_next_call_gets_a_new_one(
    vertex_chat, fake_vertex, fake_google_token
):
    invoke(vertex_chat, CHAT)
    fake_google_token.issued.clear()  # revoked on Google's side before it expired

    with pytest.raises(GatewayError) as raised:
        invoke(vertex_chat, CHAT)
    assert (raised.value.status, raised.value.code) == (401, "upstream_credentials_rejected")

    invoke(vertex_chat, CHAT)
    assert fake_google_token.issued_count == 1  # the fresh one (the first was cleared above)
    assert len(fake_google_token.requests) == 2


def test_a_refused_key_is_a_401_saying_why(vertex_chat, fake_vertex, fake_google_token, caplog, service_account):
    caplog.set_level(logging.DEBUG)
    fake_google_token.revoke_all()

    with pytest.raises(GatewayError) as raised:
        invoke(vertex_chat, CHAT)

    error = raised.value
    assert (error.status, error.code, error.upstream_status) == (401, "upstream_credentials_rejected", 400)
    assert error.message == ("Google's OAuth token service rejected the connection's credentials (HTTP 400): "
                             "invalid_grant: Invalid JWT Signature.")
    assert fake_vertex.requests == []
    for fragment in key_fragments(service_account):
        assert fragment not in caplog.text


def test_an_unreachable_token_service_is_a_502(make_connection, make_endpoint, fake_vertex):
    info = make_service_account(f"http://127.0.0.1:{closed_port()}/token")
    connection = make_connection(
        "vertex-down", provider="vertex_ai", auth_method="service_account",
        secrets={"service_account_json": info}, config={"project_id": "my-project-123", "base_url": fake_vertex.url},
    )

    with pytest.raises(GatewayError) as raised:
        invoke(make_endpoint("down-chat", connection), CHAT)

    assert (raised.value.status, raised.value.code) == (502, "upstream_unreachable")
    assert raised.value.message == "Could not connect to Google's OAuth token service."
    check = run(adapter_for("vertex_ai").test_credentials(connection.account()))
    assert check == (False, None, "Could not connect to Google's OAuth token service.")


def test_a_token_service_failing_with_5xx_is_a_502_after_two_retries(vertex_chat, fake_google_token):
    fake_google_token.fail(500, {"error": "internal_failure"}, times=3)

    with pytest.raises(GatewayError) as raised:
        invoke(vertex_chat, CHAT)

    assert (raised.value.status, raised.value.upstream_status) == (502, 500)
    assert len(fake_google_token.requests) == 3


def test_a_private_key_that_cannot_be_read_is_a_clear_503(make_connection, make_endpoint, fake_google_token):
    info = {**make_service_account(fake_google_token.token_uri), "private_key": f"not a key {PLANTED_KEY}"}
    connection = make_connection("vertex-bad", provider="vertex_ai", auth_method="service_account",
                                 secrets={"service_account_json": info}, config={"project_id": "my-project-123"})

    with pytest.raises(GatewayError) as raised:
        invoke(make_endpoint("bad-chat", connection), CHAT)

    assert (raised.value.status, raised.value.code) == (503, "connection_credentials_invalid")
    assert "vertex-bad" in raised.value.message and PLANTED_KEY not in raised.value.message
    assert fake_google_token.requests == []


# --- Provider errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, expected, code", [
    (400, 400, "INVALID_ARGUMENT"),
    (401, 401, "upstream_credentials_rejected"),
    (403, 401, "upstream_credentials_rejected"),  # e.g. the wrong project, or no Vertex AI User role
    (404, 404, "NOT_FOUND"),
    (500, 502, "upstream_error"),
])
def test_vertex_errors_follow_the_error_table_without_secrets(
    gateway, vertex_chat, fake_vertex, service_account, caplog, status, expected, code
):
    caplog.set_level(logging.DEBUG)
    fake_vertex.fail(status, "Permission denied on resource project my-project-123 for {key}.", times=3)

    response = post(gateway, "/gateway/v1/chat/completions", {"model": "vertex-chat", **CHAT})

    assert response.status_code == expected
    error = error_of(response)
    assert error["code"] == code and "Permission denied on resource project" in error["message"]
    access_token = fake_vertex.requests[0].headers["authorization"].removeprefix("Bearer ")
    for fragment in [*key_fragments(service_account), access_token]:
        assert fragment not in response.content.decode() and fragment not in caplog.text


def test_a_rate_limit_is_a_429_with_retry_after(gateway, vertex_chat, fake_vertex):
    fake_vertex.fail(429, "Quota exceeded for aiplatform.googleapis.com.", headers={"Retry-After": "20"}, times=3)

    response = post(gateway, "/gateway/v1/chat/completions", {"model": "vertex-chat", **CHAT})

    assert response.status_code == 429 and response["Retry-After"] == "20"


# --- Test action ----------------------------------------------------------------------------------------


def test_a_good_key_tests_ok_through_the_api(api, vertex_connection, fake_vertex, fake_google_token):
    response = api.post("/api/v1/connections/vertex-prod/test/")

    assert response.json() == {"ok": True, "status": 200,
                               "message": "Google Vertex AI (GCP) accepted the credentials."}
    [request] = fake_vertex.requests
    assert request.method == "GET"
    assert request.path == "/v1/projects/my-project-123/locations/europe-west4/endpoints"
    assert request.query == {"pageSize": ["1"]}
    assert fake_google_token.issued_count == 1


def test_a_revoked_key_tests_not_ok_without_showing_it(api, vertex_connection, fake_google_token, service_account):
    fake_google_token.revoke_all()

    response = api.post("/api/v1/connections/vertex-prod/test/")

    body = response.json()
    assert body["ok"] is False and body["status"] == 400
    assert "invalid_grant: Invalid JWT Signature." in body["message"]
    for fragment in key_fragments(service_account):
        assert fragment not in response.content.decode()


def test_the_wrong_project_tests_not_ok(api, vertex_connection, fake_vertex):
    fake_vertex.fail(403, "Permission 'aiplatform.endpoints.list' denied on resource (or it may not exist).")

    body = api.post("/api/v1/connections/vertex-prod/test/").json()

    assert body["ok"] is False and body["status"] == 403
    assert "Permission 'aiplatform.endpoints.list' denied" in body["message"]


def test_the_test_button_reports_a_good_and_a_revoked_key(client, admin_user, vertex_connection, fake_google_token,
                                                          service_account):
    client.force_login(admin_user)

    response = client.post("/settings/connections/vertex-prod/test/", follow=True)
    assert "Google Vertex AI (GCP) accepted the credentials." in response.content.decode()

    TOKENS.clear()
    fake_google_token.revoke_all()
    response = client.post("/settings/connections/vertex-prod/test/", follow=True)
    text = response.content.decode()
    assert "failed (provider status 400)" in text and "Invalid JWT Signature" in text
    for fragment in key_fragments(service_account):
        assert fragment not in text
