"""Azure OpenAI with Entra ID: client credentials exchanged for a cached token, sent as Bearer to a fake Azure."""

import json
import logging
import threading
import time
from urllib.parse import parse_qs

import pytest
from rest_framework.test import APIClient

from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Endpoint
from providers.adapters import adapter_for, azure_ad
from providers.errors import GatewayError
from tests.conftest import PLANTED_KEY
from tests.fakes.azure_token import SCOPE, FakeEntraID
from tests.fakes.server import Reply, closed_port
from tests.provider_fixtures import AZURE_API_VERSION, CHAT_BODY
from tests.provider_calls import run
from tests.provider_calls import gather, run

pytestmark = pytest.mark.django_db

TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "2b7e1f3c-5a4d-4e6f-8a9b-0c1d2e3f4a5b"
ROTATED_SECRET = "Xy8Q~rotated-client-secret-0123456789abc"


@pytest.fixture
def entra(settings, fake_openai):
    """A fake Entra ID that issues tokens for PLANTED_KEY, set as the authority, whose tokens Azure accepts."""
    with FakeEntraID(TENANT_ID, CLIENT_ID, {PLANTED_KEY}) as fake:
        settings.AZURE_AUTHORITY_HOST = fake.url
        fake_openai.authority = fake
        yield fake


@pytest.fixture
def ad_connection(make_connection, fake_openai, entra) -> Connection:
    return make_connection(
        "azure-ad", auth_method="azure_ad", secrets={"client_secret": PLANTED_KEY},
        config={"endpoint_url": fake_openai.url, "api_version": AZURE_API_VERSION,
                "tenant_id": TENANT_ID, "client_id": CLIENT_ID},
    )


@pytest.fixture
def ad_chat(make_endpoint, ad_connection) -> Endpoint:
    return make_endpoint("ad-chat", ad_connection, model="my-gpt4o-deployment")


def invoke(endpoint: Endpoint, body: dict):
    endpoint = Endpoint.objects.prefetch_related("destinations__connection").get(pk=endpoint.pk)  # as a route loads it
    return run(adapter_for(endpoint.destinations.get().connection.provider).invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, body))


def form_of(request) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(request.body.decode()).items()}


def rotate_secret(connection: Connection, value: str, actor) -> None:
    connection = Connection.objects.get(pk=connection.pk)
    connection.update_secrets({"client_secret": value})
    connection.full_clean()
    connection_save(connection=connection, actor=actor)


# --- Calls ----------------------------------------------------------------------------------------------


def test_a_chat_call_signs_in_with_client_credentials_then_sends_the_token_as_bearer(ad_chat, entra, fake_openai):
    answer = invoke(ad_chat, CHAT_BODY)

    assert answer["choices"][0]["message"]["content"] == "Hello from the fake"
    [token_request] = entra.requests
    assert (token_request.method, token_request.path) == ("POST", f"/{TENANT_ID}/oauth2/v2.0/token")
    assert token_request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form_of(token_request) == {"grant_type": "client_credentials", "client_id": CLIENT_ID,
                                      "client_secret": PLANTED_KEY, "scope": SCOPE}
    [request] = fake_openai.requests
    assert request.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert request.query == {"api-version": [AZURE_API_VERSION]}
    assert request.headers["authorization"] == f"Bearer {entra.issued[0]}"
    assert "api-key" not in request.headers
    assert PLANTED_KEY not in request.target and PLANTED_KEY not in str(request.headers)


def test_an_embeddings_call_uses_the_deployment_embeddings_url(make_endpoint, ad_connection, fake_openai, entra):
    endpoint = make_endpoint("ad-embed", ad_connection, model="embed-deploy", task="embeddings")

    answer = invoke(endpoint, {"input": ["one", "two"]})

    assert [item["index"] for item in answer["data"]] == [0, 1]
    request = fake_openai.requests[0]
    assert request.target == f"/openai/deployments/embed-deploy/embeddings?api-version={AZURE_API_VERSION}"
    assert request.headers["authorization"] == f"Bearer {entra.issued[0]}"


def test_a_stream_passes_through(ad_chat, fake_openai):
    received = b"".join(invoke(ad_chat, {**CHAT_BODY, "stream": True}))

    assert b'"Hel"' in received and received.endswith(b"data: [DONE]\n\n")
    assert fake_openai.requests[0].headers["accept"] == "text/event-stream"


# --- Token cache ----------------------------------------------------------------------------------------


def test_many_calls_share_one_token(ad_chat, entra, fake_openai):
    for _ in range(5):
        invoke(ad_chat, CHAT_BODY)

    assert entra.tokens_issued == 1
    assert {request.headers["authorization"] for request in fake_openai.requests} == {f"Bearer {entra.issued[0]}"}


def test_calls_asking_at_once_wait_for_one_token_fetch(ad_connection, entra):
    entra.delay = 0.3  # long enough for every call to ask while the first fetch is in flight
    account = Connection.objects.get(pk=ad_connection.pk).account()

    tokens = run(gather(*(azure_ad.access_token(account) for _ in range(8))))

    assert entra.tokens_issued == 1 and len(entra.requests) == 1
    assert tokens == [entra.issued[0]] * 8


def test_a_rotated_secret_signs_in_again_at_once(ad_chat, entra, fake_openai, admin_user):
    invoke(ad_chat, CHAT_BODY)
    entra.secrets = {ROTATED_SECRET}  # the old secret is revoked in Entra ID as it is rotated here
    rotate_secret(ad_chat.destinations.get().connection, ROTATED_SECRET, admin_user)

    invoke(ad_chat, CHAT_BODY)

    assert entra.tokens_issued == 2
    assert [form_of(request)["client_secret"] for request in entra.requests] == [PLANTED_KEY, ROTATED_SECRET]
    assert fake_openai.requests[-1].headers["authorization"] == f"Bearer {entra.issued[1]}"


def test_a_token_that_lives_less_than_the_refresh_margin_is_renewed_half_way(ad_chat, entra):
    entra.expires_in = 1  # handed out until half its life when that is sooner than a minute before expiry

    invoke(ad_chat, CHAT_BODY)
    invoke(ad_chat, CHAT_BODY)
    assert entra.tokens_issued == 1
    time.sleep(0.6)
    invoke(ad_chat, CHAT_BODY)

    assert entra.tokens_issued == 2


def test_a_token_azure_refuses_is_not_offered_again(ad_chat, entra, fake_openai):
    invoke(ad_chat, CHAT_BODY)
    entra.revoke()  # e.g. the app's role assignment was removed and its tokens no longer work

    with pytest.raises(GatewayError) as raised:
        invoke(ad_chat, CHAT_BODY)
    assert (raised.value.status, raised.value.code) == (401, "upstream_credentials_rejected")

    assert invoke(ad_chat, CHAT_BODY)["object"] == "chat.completion"  # signed in again
    assert entra.tokens_issued == 2


def test_editing_the_client_id_signs_in_again(ad_chat, entra, admin_user):
    invoke(ad_chat, CHAT_BODY)
    other_client = "9c0d1e2f-3a4b-4c5d-8e6f-7a8b9c0d1e2f"
    entra.client_id = other_client
    connection = Connection.objects.get(pk=ad_chat.destinations.get().connection.pk)
    connection.config = {**connection.config, "client_id": other_client}
    connection.full_clean()
    connection_save(connection=connection, actor=admin_user)

    invoke(ad_chat, CHAT_BODY)

    assert [form_of(request)["client_id"] for request in entra.requests] == [CLIENT_ID, other_client]


# --- Sign-in failures -----------------------------------------------------------------------------------


def test_a_refused_client_secret_is_a_clear_401_without_calling_azure(ad_chat, entra, fake_openai):
    entra.secrets = {"some-other-secret"}

    with pytest.raises(GatewayError) as raised:
        invoke(ad_chat, CHAT_BODY)

    error = raised.value
    assert (error.status, error.code, error.upstream_status) == (401, "upstream_credentials_rejected", 401)
    assert error.message.startswith(
        "Microsoft Entra ID refused the connection's client credentials (HTTP 401): AADSTS7000215: "
        "Invalid client secret provided."
    )
    assert "Trace ID" not in error.message and PLANTED_KEY not in error.message
    assert fake_openai.requests == []


def test_an_unknown_tenant_is_a_clear_401(ad_chat, entra):
    entra.tenant_id = "00000000-0000-0000-0000-00000000dead"

    with pytest.raises(GatewayError) as raised:
        invoke(ad_chat, CHAT_BODY)

    assert raised.value.status == 401 and "(HTTP 400): AADSTS90002: Tenant" in raised.value.message


def test_an_unreachable_token_endpoint_is_a_502_that_names_entra_id(ad_chat, settings, fake_openai):
    settings.AZURE_AUTHORITY_HOST = f"http://127.0.0.1:{closed_port()}"

    with pytest.raises(GatewayError) as raised:
        invoke(ad_chat, CHAT_BODY)

    assert (raised.value.status, raised.value.code) == (502, "upstream_unreachable")
    assert raised.value.message == "Could not connect to Microsoft Entra ID."
    assert fake_openai.requests == []


@pytest.mark.parametrize("reply, status, code", [
    (Reply.json({"error": "temporarily_unavailable", "error_description": "AADSTS50196: Loop detected."}, 503),
     502, "upstream_error"),
    (Reply(404, {"Content-Type": "text/html"}, b"<html>Not found</html>"), 502, "upstream_error"),
    (Reply.json({"error": "too_many_requests"}, 429, {"Retry-After": "30"}), 429, "upstream_rate_limited"),
    (Reply.json({"token_type": "Bearer"}), 502, "upstream_invalid_response"),
])
def test_token_endpoint_failures_are_the_gateways_not_the_callers(reply, status, code, ad_chat, entra, fake_openai):
    entra.scripted = [reply] * 3  # retries included

    with pytest.raises(GatewayError) as raised:
        invoke(ad_chat, CHAT_BODY)

    assert (raised.value.status, raised.value.code) == (status, code)
    assert "Microsoft Entra ID" in raised.value.message and PLANTED_KEY not in raised.value.message
    assert fake_openai.requests == []


def test_a_private_authority_address_is_refused_by_the_guard(ad_chat, settings, fake_openai):
    settings.AZURE_AUTHORITY_HOST = "http://169.254.169.254"

    with pytest.raises(GatewayError) as raised:
        invoke(ad_chat, CHAT_BODY)

    assert (raised.value.status, raised.value.code) == (502, "upstream_address_refused")


# --- Test action ----------------------------------------------------------------------------------------


@pytest.fixture
def api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_the_test_action_signs_in_and_lists_models(api, ad_connection, entra, fake_openai):
    response = api.post("/api/v1/connections/azure-ad/test/")

    assert response.json() == {"ok": True, "status": 200, "message": "OpenAI accepted the credentials."}
    assert fake_openai.requests[0].target == f"/openai/models?api-version={AZURE_API_VERSION}"
    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {entra.issued[0]}"


def test_the_test_action_reports_a_revoked_secret_without_showing_it(api, ad_chat, entra, fake_openai):
    invoke(ad_chat, CHAT_BODY)  # a token is cached, and would work for another hour
    entra.secrets.clear()

    response = api.post("/api/v1/connections/azure-ad/test/")

    body = response.json()
    assert body["ok"] is False and body["status"] == 401 and "AADSTS7000215" in body["message"]
    assert PLANTED_KEY not in response.content.decode()
    assert len(fake_openai.requests) == 1  # only the call before


def test_the_test_button_on_the_page(client, admin_user, ad_connection, entra):
    client.force_login(admin_user)

    response = client.post("/settings/connections/azure-ad/test/", follow=True)
    assert "OpenAI accepted the credentials." in response.content.decode()

    entra.secrets.clear()  # a cached token still works, but Test signs in again with the stored secret
    response = client.post("/settings/connections/azure-ad/test/", follow=True)
    text = response.content.decode()
    assert "failed (provider status 401)" in text and PLANTED_KEY not in text


# --- Secrets stay secret --------------------------------------------------------------------------------


def test_neither_the_secret_nor_the_token_reaches_responses_or_logs(client, ad_chat, entra, caplog, django_user_model, site):
    from django.contrib.auth.models import Permission

    from tokens.models import ApiToken

    caplog.set_level(logging.DEBUG)
    user = django_user_model.objects.create_user("svc")
    user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    _, api_token = ApiToken.issue(user=user)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {api_token}"}

    def chat():
        return site.post("/gateway/v1/chat/completions", json.dumps({**CHAT_BODY, "model": "ad-chat"}),
                           content_type="application/json", **headers)

    ok = chat()
    issued = list(entra.issued)
    entra.secrets.clear()
    entra.revoke()
    answers = [ok, chat(), chat()]  # Azure refuses the cached token, then Entra ID the secret

    assert [answer.status_code for answer in answers] == [200, 401, 401]
    assert "Microsoft Entra ID refused" in answers[2].json()["error"]["message"]
    assert "Entra ID answered 401" in caplog.text  # the refusal was logged...
    for value in (PLANTED_KEY, *issued):
        assert value not in caplog.text  # ...without the secret or any token
        assert all(value not in answer.content.decode() for answer in answers)
