"""The Databricks adapter against a fake workspace: serving invocations, PAT and OAuth M2M tokens, errors, Test."""

import base64
import logging
import threading
import time
from urllib.parse import parse_qs

import pytest
from rest_framework.test import APIClient

from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Endpoint
from providers.adapters import adapter_for
from providers.adapters.databricks import TOKENS
from tests.conftest import PLANTED_KEY
from tests.fakes.databricks import FakeDatabricks
from tests.fakes.server import closed_port
from tests.providers.adapter_checks import (
    LOGGERS, assert_error_table, assert_secret_never_leaves, assert_streams_incrementally,
    assert_task_refused_at_creation, assert_test_action, contents_of, invoke, invoke_error,
)
from tests.provider_fixtures import CHAT_BODY
from tests.provider_calls import gather, run

pytestmark = pytest.mark.django_db

CLIENT_ID = "6a1c0b8e-1f2d-4c3b-9a8e-0d1c2b3a4f5e"
ROTATED_SECRET = "dose-rotated-0123456789abcdefABCDEF"
MODEL = "databricks-meta-llama-3-3-70b-instruct"


@pytest.fixture(autouse=True)
def no_cached_tokens():
    """Tokens cached by one test (same connection ids in a fresh database) must not serve the next."""
    TOKENS.clear()
    yield
    TOKENS.clear()


@pytest.fixture
def fake_databricks():
    with FakeDatabricks(keys={PLANTED_KEY}, clients={CLIENT_ID: PLANTED_KEY}) as fake:
        yield fake


@pytest.fixture
def workspace_pat(make_connection, fake_databricks):
    return make_connection("dbx", provider="databricks", auth_method="token", secrets={"token": PLANTED_KEY},
                           config={"host": fake_databricks.url})


@pytest.fixture
def workspace_oauth(make_connection, fake_databricks):
    return make_connection("dbx-sp", provider="databricks", auth_method="oauth_m2m",
                           secrets={"client_secret": PLANTED_KEY},
                           config={"host": fake_databricks.url, "client_id": CLIENT_ID})


@pytest.fixture
def llama(make_endpoint, workspace_pat):
    return make_endpoint("llama", workspace_pat, model=MODEL)


@pytest.fixture
def llama_sp(make_endpoint, workspace_oauth):
    return make_endpoint("llama-sp", workspace_oauth, model=MODEL)


def rotate_client_secret(fake: FakeDatabricks, admin_user) -> None:
    fake.clients[CLIENT_ID] = ROTATED_SECRET
    connection = Connection.objects.get(name="dbx-sp")
    connection.update_secrets({"client_secret": ROTATED_SECRET})
    connection.full_clean()
    connection_save(connection=connection, actor=admin_user)


def basic_credentials(request) -> str:
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    return base64.b64decode(encoded).decode()


# --- Personal access token ------------------------------------------------------------------------------


def test_a_chat_call_invokes_the_serving_endpoint_with_the_token_and_no_model(llama, fake_databricks):
    answer = invoke(llama, {**CHAT_BODY, "temperature": 0.1})

    [request] = fake_databricks.requests
    assert (request.method, request.target) == ("POST", f"/serving-endpoints/{MODEL}/invocations")
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"
    assert request.json() == {"messages": CHAT_BODY["messages"], "temperature": 0.1}
    assert answer["object"] == "chat.completion" and answer["choices"][0]["message"]["content"] == "Hello from DBRX"


def test_embeddings_invoke_the_serving_endpoint_in_openais_shape(make_endpoint, workspace_pat, fake_databricks):
    endpoint = make_endpoint("bge", workspace_pat, model="databricks-bge-large-en", task="embeddings")

    answer = invoke(endpoint, {"model": "bge", "input": ["a", "b"]})

    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert fake_databricks.requests[0].json() == {"input": ["a", "b"]}
    assert fake_databricks.requests[0].path == "/serving-endpoints/databricks-bge-large-en/invocations"


def test_an_endpoint_name_cannot_escape_its_path(make_endpoint, workspace_pat, fake_databricks):
    invoke(make_endpoint("odd", workspace_pat, model="../../api/2.0/secrets"), CHAT_BODY)

    assert fake_databricks.requests[0].path == "/serving-endpoints/..%2F..%2Fapi%2F2.0%2Fsecrets/invocations"


def test_a_stream_passes_through_as_it_arrives_and_ends_with_done(llama, fake_databricks):
    received = assert_streams_incrementally(llama, fake_databricks, CHAT_BODY, first="Hel", rest=" DBRX")

    assert contents_of(received) == "Hello from DBRX"
    assert fake_databricks.requests[0].json()["stream"] is True


def test_upstream_errors_follow_the_gateway_error_table(llama, fake_databricks):
    assert_error_table(llama, fake_databricks, CHAT_BODY, "Databricks")


def test_the_token_never_leaves_in_answers_or_logs(llama, fake_databricks, caplog):
    assert_secret_never_leaves(llama, fake_databricks, CHAT_BODY, caplog)


def test_an_unknown_task_is_refused_at_endpoint_creation(workspace_pat, admin_user):
    assert_task_refused_at_creation(admin_user, "dbx", "completions", "completions")


def test_the_test_action_lists_serving_endpoints(workspace_pat, fake_databricks, admin_user, client):
    assert_test_action("dbx", fake_databricks, "Databricks", admin_user, client, revoke=fake_databricks.keys.clear)

    request = fake_databricks.requests[0]
    assert (request.method, request.target) == ("GET", "/api/2.0/serving-endpoints")
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"


# --- OAuth machine to machine ---------------------------------------------------------------------------


def test_oauth_gets_a_token_with_client_credentials_then_calls_with_it(llama_sp, fake_databricks):
    answer = invoke(llama_sp, CHAT_BODY)

    token_request, call = fake_databricks.requests
    assert (token_request.method, token_request.path) == ("POST", "/oidc/v1/token")
    assert basic_credentials(token_request) == f"{CLIENT_ID}:{PLANTED_KEY}"
    assert parse_qs(token_request.body.decode()) == {"grant_type": ["client_credentials"], "scope": ["all-apis"]}
    assert call.headers["authorization"] == f"Bearer {fake_databricks.issued[0]}"
    assert answer["choices"][0]["message"]["content"] == "Hello from DBRX"


def test_the_token_is_cached_across_calls(llama_sp, fake_databricks):
    for _ in range(5):
        invoke(llama_sp, CHAT_BODY)

    assert len(fake_databricks.issued) == 1
    assert len(fake_databricks.token_requests()) == 1


def test_concurrent_first_calls_obtain_one_token(workspace_oauth, fake_databricks):
    fake_databricks.token_delay = 0.2  # the first request is still out when the others need a token
    adapter = adapter_for("databricks")
    account = workspace_oauth.account()

    tokens = run(gather(*(adapter.access_token(account) for _ in range(8))))

    assert len(fake_databricks.token_requests()) == 1
    assert tokens == fake_databricks.issued * 8


def test_a_token_is_renewed_before_it_expires(llama_sp, fake_databricks):
    fake_databricks.expires_in = 1  # renewed half way when that is sooner than a minute ahead
    invoke(llama_sp, CHAT_BODY)
    invoke(llama_sp, CHAT_BODY)
    time.sleep(0.6)
    invoke(llama_sp, CHAT_BODY)

    assert len(fake_databricks.issued) == 2
    assert fake_databricks.requests[-1].headers["authorization"] == f"Bearer {fake_databricks.issued[1]}"


def test_a_rotated_secret_gets_a_new_token_at_once(llama_sp, fake_databricks, admin_user):
    invoke(llama_sp, CHAT_BODY)
    rotate_client_secret(fake_databricks, admin_user)

    invoke(llama_sp, CHAT_BODY)

    assert len(fake_databricks.issued) == 2
    assert basic_credentials(fake_databricks.token_requests()[-1]) == f"{CLIENT_ID}:{ROTATED_SECRET}"
    assert fake_databricks.requests[-1].headers["authorization"] == f"Bearer {fake_databricks.issued[1]}"


def test_a_revoked_cached_token_is_dropped_and_the_next_call_gets_a_new_one(llama_sp, fake_databricks):
    invoke(llama_sp, CHAT_BODY)
    fake_databricks.revoked.add(fake_databricks.issued[0])

    error = invoke_error(llama_sp, CHAT_BODY)
    invoke(llama_sp, CHAT_BODY)

    assert (error.status, error.code) == (401, "upstream_credentials_rejected")
    assert len(fake_databricks.issued) == 2


def test_a_refused_client_secret_is_a_401_that_says_the_token_request_failed(llama_sp, fake_databricks):
    fake_databricks.clients[CLIENT_ID] = "another-secret"

    error = invoke_error(llama_sp, CHAT_BODY)

    assert (error.status, error.code, error.upstream_status) == (401, "upstream_credentials_rejected", 401)
    assert error.message == ("OAuth token request: Databricks rejected the connection's credentials (HTTP 401): "
                             "invalid_client: Client authentication failed")
    assert [request.path for request in fake_databricks.requests] == ["/oidc/v1/token"]


def test_a_token_endpoint_that_is_down_is_a_502_without_calling_the_model(llama_sp, fake_databricks):
    fake_databricks.fail_token(500)

    error = invoke_error(llama_sp, CHAT_BODY)

    assert (error.status, error.code) == (502, "upstream_error")
    assert error.message.startswith("OAuth token request: Databricks answered HTTP 500")
    assert [request.path for request in fake_databricks.requests] == ["/oidc/v1/token"]
    invoke(llama_sp, CHAT_BODY)  # a failure is not cached: the next call tries again
    assert len(fake_databricks.issued) == 1


def test_a_token_answer_without_a_token_is_a_502(llama_sp, fake_databricks):
    fake_databricks.fail_token(200, {"token_type": "Bearer"})

    error = invoke_error(llama_sp, CHAT_BODY)

    assert (error.status, error.code) == (502, "upstream_invalid_response")


def test_an_unreachable_workspace_is_a_502(make_connection, make_endpoint):
    connection = make_connection("dbx-gone", provider="databricks", auth_method="oauth_m2m",
                                 secrets={"client_secret": PLANTED_KEY},
                                 config={"host": f"http://127.0.0.1:{closed_port()}", "client_id": CLIENT_ID})

    error = invoke_error(make_endpoint("gone", connection, model=MODEL), CHAT_BODY)

    assert (error.status, error.code) == (502, "upstream_unreachable")


def test_the_token_request_goes_through_the_address_guard(make_connection, make_endpoint, fake_databricks,
                                                          settings, fake_dns):
    fake_dns["dbc-inside.cloud.example"] = "127.0.0.1"  # a public-looking workspace name resolving inside
    connection = make_connection("dbx-inside", provider="databricks", auth_method="oauth_m2m",
                                 secrets={"client_secret": PLANTED_KEY},
                                 config={"host": f"https://dbc-inside.cloud.example:{fake_databricks.server.port}",
                                         "client_id": CLIENT_ID})
    settings.ALLOWED_PRIVATE_HOSTS = []

    error = invoke_error(make_endpoint("inside", connection, model=MODEL), CHAT_BODY)

    assert (error.status, error.code) == (502, "upstream_address_refused")
    assert fake_databricks.requests == []


def test_neither_secret_nor_access_token_leaves_in_answers_or_logs(llama_sp, fake_databricks, caplog):
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    invoke(llama_sp, CHAT_BODY)
    token = fake_databricks.issued[0]
    fake_databricks.fail(400, "Bad request with Authorization {key}")
    error = invoke_error(llama_sp, CHAT_BODY)
    fake_databricks.fail_token(401, {"error": "invalid_client", "error_description": f"secret {PLANTED_KEY} is wrong"})
    TOKENS.clear()
    token_error = invoke_error(llama_sp, CHAT_BODY)

    for text in (error.message, repr(error), str(error.body()), token_error.message, caplog.text):
        assert PLANTED_KEY not in text and token not in text
    assert "[redacted]" in error.message and "[redacted]" in token_error.message


def test_the_test_action_with_a_service_principal(workspace_oauth, fake_databricks, admin_user, client):
    api = APIClient()
    api.force_authenticate(admin_user)

    assert api.post("/api/v1/connections/dbx-sp/test/").json() == {
        "ok": True, "status": 200, "message": "Databricks accepted the credentials."}
    assert [request.path for request in fake_databricks.requests] == ["/oidc/v1/token", "/api/2.0/serving-endpoints"]

    fake_databricks.clients[CLIENT_ID] = "revoked"
    TOKENS.clear()
    body = api.post("/api/v1/connections/dbx-sp/test/").json()
    assert body["ok"] is False and body["status"] == 401
    assert "OAuth token request" in body["message"] and "invalid_client" in body["message"]
    client.force_login(admin_user)
    page = client.post("/settings/connections/dbx-sp/test/", follow=True).content.decode()
    assert "failed (provider status 401)" in page and "invalid_client" in page and PLANTED_KEY not in page


def test_the_cache_serves_the_connection_as_reloaded_by_each_request(llama_sp, fake_databricks):
    invoke(llama_sp, CHAT_BODY)
    invoke(Endpoint.objects.get(pk=llama_sp.pk), CHAT_BODY)  # a new instance, as the next request loads it

    assert len(fake_databricks.issued) == 1
