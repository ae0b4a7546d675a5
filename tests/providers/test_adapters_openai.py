"""The OpenAI family adapter against a real fake OpenAI/Azure server: shapes, headers, streaming, rotation, Test."""

import json
import threading

import pytest

from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Endpoint
from providers.adapters import adapter_for
from providers.adapters.openai import OpenAIAdapter
from providers.errors import GatewayError
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI
from tests.provider_fixtures import AZURE_API_VERSION, CHAT_BODY
from tests.provider_calls import run

pytestmark = pytest.mark.django_db

ROTATED_KEY = "sk-rotated-NEW-9876543210-zyxwvuTSRQ"


def invoke(endpoint: Endpoint, body: dict):
    endpoint = Endpoint.objects.prefetch_related("destinations__connection").get(pk=endpoint.pk)  # as a route loads it
    return run(adapter_for(endpoint.destinations.get().connection.provider).invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, body))


def sse_contents(stream: bytes) -> str:
    """The concatenated delta contents of an OpenAI chat stream."""
    text = ""
    for line in stream.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                text += choice["delta"].get("content") or ""
    return text


# --- OpenAI ---------------------------------------------------------------------------------------------


def test_a_chat_call_goes_to_chat_completions_with_the_key_as_bearer_and_the_endpoint_model(openai_chat, fake_openai):
    answer = invoke(openai_chat, CHAT_BODY)

    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"]["content"] == "Hello from the fake"
    [request] = fake_openai.requests
    assert (request.method, request.target) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"
    assert "openai-organization" not in request.headers
    assert request.json() == {**CHAT_BODY, "model": "gpt-4o-mini"}


def test_the_organization_header_is_sent_when_configured(make_connection, make_endpoint, fake_openai):
    connection = make_connection(config={"base_url": fake_openai.base_url, "organization": "org-abc123"})
    invoke(make_endpoint("chat", connection), CHAT_BODY)

    assert fake_openai.requests[0].headers["openai-organization"] == "org-abc123"


def test_an_embeddings_call_goes_to_embeddings(make_connection, make_endpoint, fake_openai):
    connection = make_connection(config={"base_url": fake_openai.base_url})
    endpoint = make_endpoint("embed", connection, model="text-embedding-3-small", task="embeddings")

    answer = invoke(endpoint, {"model": "embed", "input": ["one", "two"]})

    assert answer["object"] == "list"
    assert [item["index"] for item in answer["data"]] == [0, 1]
    [request] = fake_openai.requests
    assert request.target == "/v1/embeddings"
    assert request.json() == {"model": "text-embedding-3-small", "input": ["one", "two"]}


@pytest.mark.parametrize("provider", ["xai", "groq", "deepseek", "openrouter", "together_ai"])
def test_openai_compatible_providers_are_called_through_their_base_url(provider, make_connection, make_endpoint,
                                                                        fake_openai):
    connection = make_connection(f"{provider}-conn", provider=provider, config={"base_url": fake_openai.base_url})

    answer = invoke(make_endpoint("chat", connection, model="some-model"), CHAT_BODY)

    assert answer["model"] == "some-model"
    [request] = fake_openai.requests
    assert request.target == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"


def test_ollama_without_authentication_sends_no_auth_header_and_uses_v1(make_connection, make_endpoint):
    with FakeOpenAI(require_auth=False) as fake:
        connection = make_connection("ollama", provider="ollama", auth_method="none", secrets={},
                                     config={"base_url": fake.url})
        invoke(make_endpoint("llama", connection, model="llama3.2"), CHAT_BODY)

        [request] = fake.requests
        assert request.target == "/v1/chat/completions"
        assert "authorization" not in request.headers and "api-key" not in request.headers


def test_an_openai_compatible_server_is_called_at_its_base_url_as_given(make_connection, make_endpoint, fake_openai):
    connection = make_connection("vllm", provider="openai_compatible", config={"base_url": fake_openai.base_url})

    invoke(make_endpoint("vllm-chat", connection, model="qwen"), CHAT_BODY)

    assert fake_openai.requests[0].target == "/v1/chat/completions"
    assert fake_openai.requests[0].headers["authorization"] == f"Bearer {PLANTED_KEY}"


# --- Azure ----------------------------------------------------------------------------------------------


def test_an_azure_chat_call_uses_the_deployment_url_api_version_and_api_key_header(azure_chat, fake_openai):
    answer = invoke(azure_chat, CHAT_BODY)

    assert answer["choices"][0]["message"]["content"] == "Hello from the fake"
    [request] = fake_openai.requests
    assert request.path == "/openai/deployments/my-gpt4o-deployment/chat/completions"
    assert request.query == {"api-version": [AZURE_API_VERSION]}
    assert request.headers["api-key"] == PLANTED_KEY
    assert "authorization" not in request.headers
    assert PLANTED_KEY not in request.target


def test_an_azure_embeddings_call_uses_the_deployment_embeddings_url(make_endpoint, azure_connection, fake_openai):
    endpoint = make_endpoint("azure-embed", azure_connection, model="embed-deploy", task="embeddings")

    answer = invoke(endpoint, {"input": "hello"})

    assert len(answer["data"]) == 1
    expected = f"/openai/deployments/embed-deploy/embeddings?api-version={AZURE_API_VERSION}"
    assert fake_openai.requests[0].target == expected


def test_an_azure_deployment_name_cannot_escape_its_path(make_endpoint, azure_connection, fake_openai):
    endpoint = make_endpoint("azure-odd", azure_connection, model="../../v1/models")

    invoke(endpoint, CHAT_BODY)

    assert fake_openai.requests[0].path == "/openai/deployments/..%2F..%2Fv1%2Fmodels/chat/completions"


# --- Streaming ------------------------------------------------------------------------------------------


def test_a_stream_passes_chunks_through_as_they_arrive_and_ends_with_done(openai_chat, fake_openai):
    fake_openai.stream_gate = threading.Event()  # the fake holds the rest of the stream until we release it
    stream = iter(invoke(openai_chat, {**CHAT_BODY, "stream": True}))

    received = b""
    while b'"Hel"' not in received:
        received += next(stream)  # arrives while the provider is still holding back the rest
    assert b" fake" not in received
    fake_openai.stream_gate.set()
    received += b"".join(stream)

    assert received.endswith(b"data: [DONE]\n\n")
    assert received.count(b"[DONE]") == 1
    assert sse_contents(received) == "Hello from the fake"
    request = fake_openai.requests[0]
    assert request.json()["stream"] is True
    assert request.headers["accept"] == "text/event-stream"
    assert request.headers["accept-encoding"] == "identity"  # nothing to decompress between provider and client


def test_an_azure_stream_passes_through(azure_chat, fake_openai):
    received = b"".join(invoke(azure_chat, {**CHAT_BODY, "stream": True}))

    assert sse_contents(received) == "Hello from the fake"
    assert received.endswith(b"data: [DONE]\n\n")


def test_a_stream_the_provider_ends_without_done_still_ends_with_done(openai_chat, fake_openai):
    fake_openai.stream_done = False

    received = b"".join(invoke(openai_chat, {**CHAT_BODY, "stream": True}))

    assert received.endswith(b"}\n\ndata: [DONE]\n\n")


def test_a_stream_that_stalls_ends_with_an_openai_error_event_then_done(openai_chat, fake_openai, settings):
    settings.GATEWAY_TIMEOUT = 0.3
    fake_openai.stream_gate = threading.Event()  # never released: the provider stalls after one chunk

    received = b"".join(invoke(openai_chat, {**CHAT_BODY, "stream": True}))

    events = [line[6:] for line in received.decode().splitlines() if line.startswith("data: ")]
    assert json.loads(events[-2])["error"]["code"] == "upstream_timeout"
    assert events[-1] == "[DONE]"
    assert b'"Hel"' in received


def test_closing_an_unread_stream_releases_the_provider_connection(openai_chat, fake_openai):
    stream = invoke(openai_chat, {**CHAT_BODY, "stream": True})
    stream.close()  # what Django does when the client goes away before the first chunk

    assert stream.response.is_closed


# --- Credentials at call time ---------------------------------------------------------------------------


def test_a_rotated_key_is_used_by_the_next_call(openai_chat, fake_openai, admin_user):
    fake_openai.keys.add(ROTATED_KEY)
    invoke(openai_chat, CHAT_BODY)

    connection = Connection.objects.get(name="openai-prod")
    connection.update_secrets({"api_key": ROTATED_KEY})
    connection.full_clean()
    connection_save(connection=connection, actor=admin_user)
    invoke(openai_chat, CHAT_BODY)

    assert fake_openai.presented_keys() == [PLANTED_KEY, ROTATED_KEY]


# --- Bodies and tasks -----------------------------------------------------------------------------------


@pytest.mark.parametrize("body", [[], {"messages": []}, {"messages": "hi"}, {**CHAT_BODY, "stream": "yes"}])
def test_a_bad_chat_body_is_a_400_before_any_provider_call(body, openai_chat, fake_openai):
    with pytest.raises(GatewayError) as raised:
        invoke(openai_chat, body)

    assert (raised.value.status, raised.value.code) == (400, "invalid_body")
    assert fake_openai.requests == []


@pytest.mark.parametrize("body", [{"input": ""}, {"input": []}, {"input": "x", "stream": True}])
def test_a_bad_embeddings_body_is_a_400(body, make_connection, make_endpoint, fake_openai):
    endpoint = make_endpoint("embed", make_connection(config={"base_url": fake_openai.base_url}), task="embeddings")

    with pytest.raises(GatewayError) as raised:
        invoke(endpoint, body)

    assert raised.value.status == 400


def test_every_registry_provider_has_an_adapter_and_an_unknown_one_is_a_clear_501():
    from providers.catalogue import PROVIDERS

    assert all(adapter_for(provider_id) for provider_id in PROVIDERS)
    with pytest.raises(GatewayError) as raised:
        adapter_for("no-such-provider")
    assert (raised.value.status, raised.value.code) == (501, "provider_not_supported")


# --- Test action ----------------------------------------------------------------------------------------


def test_credentials_check_lists_models_with_the_key(openai_chat, fake_openai):
    check = run(adapter_for("openai").test_credentials(openai_chat.destinations.get().connection.account()))

    assert check == (True, 200, "OpenAI accepted the credentials.")
    [request] = fake_openai.requests
    assert (request.method, request.target) == ("GET", "/v1/models")
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"


def test_azure_credentials_check_lists_models_with_api_version(azure_connection, fake_openai):
    ok, status, _ = run(adapter_for("openai").test_credentials(azure_connection.account()))

    assert (ok, status) == (True, 200)
    assert fake_openai.requests[0].target == f"/openai/models?api-version={AZURE_API_VERSION}"


def test_credentials_check_reports_a_rejected_key_without_showing_it(openai_chat, fake_openai):
    fake_openai.keys = {"sk-some-other-key-000000000000000"}

    ok, status, message = run(adapter_for("openai").test_credentials(openai_chat.destinations.get().connection.account()))

    assert (ok, status) == (False, 401)
    assert message.startswith("OpenAI rejected the connection's credentials (HTTP 401): Incorrect API key provided")
    assert PLANTED_KEY not in message and PLANTED_KEY[-4:] not in message


@pytest.mark.parametrize(
    "provider", ["openai", "xai", "groq", "deepseek", "openrouter", "together_ai", "ollama", "openai_compatible"]
)
def test_the_registry_names_the_openai_adapter_for_the_whole_family(provider):
    assert isinstance(adapter_for(provider), OpenAIAdapter)
