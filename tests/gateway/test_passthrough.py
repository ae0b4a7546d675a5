"""The native pass-through routes with the providers' own SDKs as clients: Anthropic's Messages API at
/gateway/anthropic and OpenAI's Responses API at /gateway/v1/responses, our token in place of the key."""

import json

import anthropic
import openai
import pytest
from django.contrib.auth.models import Permission

from connections.services import connection_save
from tests.conftest import PLANTED_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.server import closed_port
from tokens.models import ApiToken
from usage.models import UsageRecord
from usage.recorder import RECORDER

pytestmark = pytest.mark.django_db(transaction=True)

ROTATED_KEY = "sk-ant-rotated-0123456789abcdefghij"
MESSAGES = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def token(django_user_model) -> str:
    user = django_user_model.objects.create_user("sdk-user")
    user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    return ApiToken.issue(user=user)[1]


@pytest.fixture
def fake_claude():
    with FakeAnthropic(keys={PLANTED_KEY}) as fake:
        yield fake


@pytest.fixture
def claude(make_connection, make_endpoint, fake_claude):
    connection = make_connection("claude", provider="anthropic", config={"base_url": fake_claude.url})
    return make_endpoint("claude", connection, model="claude-sonnet-4-5")


@pytest.fixture
def claude_sdk(asgi_live_server, token, claude):
    client = anthropic.Anthropic(base_url=f"{asgi_live_server.url}/gateway/anthropic", api_key=token,
                                 max_retries=0, timeout=10)
    yield client
    client.close()


@pytest.fixture
def responses_sdk(asgi_live_server, token, openai_chat):
    client = openai.OpenAI(base_url=f"{asgi_live_server.url}/gateway/v1", api_key=token, max_retries=0, timeout=10)
    yield client
    client.close()


def sent_headers(fake) -> str:
    return json.dumps([request.headers for request in fake.requests])


# --- Anthropic ------------------------------------------------------------------------------------------


def test_the_anthropic_sdk_gets_the_providers_message_with_the_connections_key(claude_sdk, fake_claude, token):
    message = claude_sdk.messages.create(model="claude", max_tokens=100, messages=MESSAGES, system="Be brief.",
                                         metadata={"user_id": "u-1"})

    assert message.id == "msg_fake01" and message.content[0].text == "Hello from Claude"
    assert message.usage.input_tokens == 12 and message.usage.cache_read_input_tokens == 3
    sent = fake_claude.requests[0]
    assert sent.path == "/v1/messages" and sent.headers["x-api-key"] == PLANTED_KEY
    assert sent.headers["anthropic-version"] == claude_sdk.default_headers["anthropic-version"]  # the SDK's own
    assert sent.json() == {"model": "claude-sonnet-4-5", "max_tokens": 100, "messages": MESSAGES,
                           "system": "Be brief.", "metadata": {"user_id": "u-1"}}  # only the model changed
    assert token not in sent_headers(fake_claude) and "authorization" not in sent.headers


def test_a_call_is_recorded_in_usage_with_the_providers_token_counts(claude_sdk, claude):
    claude_sdk.messages.create(model="claude", max_tokens=100, messages=MESSAGES)

    RECORDER.flush()
    [record] = UsageRecord.objects.all()
    assert (record.endpoint_id, record.connection_id, record.provider, record.model, record.status) == (
        claude.pk, claude.destinations.get().connection_id, "anthropic", "claude-sonnet-4-5", 200)
    assert (record.prompt_tokens, record.completion_tokens) == (12 + 3, 6)  # cache reads are input too


def test_our_token_may_come_as_a_bearer_token_too(asgi_live_server, token, claude, fake_claude):
    with anthropic.Anthropic(base_url=f"{asgi_live_server.url}/gateway/anthropic", auth_token=token,
                             max_retries=0) as client:
        assert client.messages.create(model="claude", max_tokens=10, messages=MESSAGES).content[0].text
    assert fake_claude.presented_keys() == [PLANTED_KEY]


def test_the_anthropic_sdk_streams(claude_sdk, fake_claude):
    with claude_sdk.messages.stream(model="claude", max_tokens=100, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert text == "Hello from Claude"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 6
    assert fake_claude.requests[0].json()["stream"] is True


def test_a_stream_is_relayed_byte_for_byte(site, token, claude, fake_claude):
    response = site.post("/gateway/anthropic/v1/messages",
                         {"model": "claude", "max_tokens": 10, "messages": MESSAGES, "stream": True},
                         content_type="application/json", HTTP_X_API_KEY=token)

    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    assert response.content == b"".join(fake_claude.events("claude-sonnet-4-5"))  # no [DONE], nothing added


def test_the_anthropic_route_falls_back_to_the_next_destination(site, token, make_connection, make_endpoint,
                                                                 fake_claude):
    gone = make_connection("claude-gone", provider="anthropic",
                           config={"base_url": f"http://127.0.0.1:{closed_port()}"})
    backup = make_connection("claude", provider="anthropic", config={"base_url": fake_claude.url})
    make_endpoint("claude", gone, model="claude-opus-4-1", fallbacks=((backup, "claude-sonnet-4-5"),))

    response = site.post("/gateway/anthropic/v1/messages", {"model": "claude", "max_tokens": 10, "messages": MESSAGES},
                         content_type="application/json", HTTP_X_API_KEY=token)

    assert response.status_code == 200 and json.loads(response.content)["id"] == "msg_fake01"
    assert (response["x-llmc-destination"], response["x-llmc-attempts"]) == ("claude/claude-sonnet-4-5", "2")
    assert [request.json()["model"] for request in fake_claude.requests] == ["claude-sonnet-4-5"]


def test_count_tokens_goes_to_the_provider(claude_sdk, fake_claude):
    assert claude_sdk.messages.count_tokens(model="claude", messages=MESSAGES).input_tokens == 10
    assert fake_claude.requests[0].path == "/v1/messages/count_tokens"
    assert fake_claude.requests[0].json()["model"] == "claude-sonnet-4-5"


def test_a_beta_header_is_passed_on(claude_sdk, fake_claude):
    claude_sdk.messages.create(model="claude", max_tokens=10, messages=MESSAGES,
                               extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    assert fake_claude.requests[0].headers["anthropic-beta"] == "context-1m-2025-08-07"


def test_the_rotated_key_is_used_on_the_next_call(claude_sdk, claude, fake_claude):
    fake_claude.keys.add(ROTATED_KEY)
    claude_sdk.messages.create(model="claude", max_tokens=10, messages=MESSAGES)
    connection = claude.destinations.get().connection
    connection.update_secrets({"api_key": ROTATED_KEY})
    connection_save(connection=connection, actor=None)

    claude_sdk.messages.create(model="claude", max_tokens=10, messages=MESSAGES)

    assert fake_claude.presented_keys() == [PLANTED_KEY, ROTATED_KEY]


def test_errors_are_anthropic_shaped_for_the_sdk(claude_sdk, asgi_live_server, fake_claude, make_endpoint,
                                                 openai_chat):
    with anthropic.Anthropic(base_url=f"{asgi_live_server.url}/gateway/anthropic", api_key="llmc_wrong",
                             max_retries=0) as stranger:
        with pytest.raises(anthropic.AuthenticationError) as caught:
            stranger.messages.create(model="claude", max_tokens=10, messages=MESSAGES)
    assert caught.value.body == {"type": "error", "error": {
        "type": "authentication_error", "message": "Send a valid API token as 'Authorization: Bearer <token>'."}}

    with pytest.raises(anthropic.NotFoundError):
        claude_sdk.messages.create(model="missing", max_tokens=10, messages=MESSAGES)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude_sdk.messages.create(model="chat", max_tokens=10, messages=MESSAGES)  # an OpenAI endpoint
    assert "cannot be called through this route" in caught.value.body["error"]["message"]

    fake_claude.fail(429, "Slow down", headers={"Retry-After": "7"})
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude_sdk.messages.create(model="claude", max_tokens=10, messages=MESSAGES)
    assert caught.value.response.headers["retry-after"] == "7"
    assert fake_claude.presented_keys() == [PLANTED_KEY]  # nothing sent for the refused ones


def test_a_provider_that_echoes_the_key_is_redacted(claude_sdk, fake_claude):
    fake_claude.fail(400, "bad key {key} in request")
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude_sdk.messages.create(model="claude", max_tokens=10, messages=MESSAGES)

    assert PLANTED_KEY not in caught.value.response.text and "[redacted]" in caught.value.response.text
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_a_caller_without_the_permission_is_refused(asgi_live_server, claude, django_user_model):
    user = django_user_model.objects.create_user("no-perm")
    _, token = ApiToken.issue(user=user)
    with anthropic.Anthropic(base_url=f"{asgi_live_server.url}/gateway/anthropic", api_key=token,
                             max_retries=0) as client:
        with pytest.raises(anthropic.PermissionDeniedError):
            client.messages.create(model="claude", max_tokens=10, messages=MESSAGES)


# --- OpenAI's Responses API -----------------------------------------------------------------------------


def test_the_openai_sdk_gets_a_response(responses_sdk, fake_openai, token):
    response = responses_sdk.responses.create(model="chat", input="Hi", instructions="Be brief.")

    assert response.id == "resp_fake01" and response.output_text == "Hello from the fake"
    assert response.usage.total_tokens == 14
    sent = fake_openai.requests[0]
    assert sent.path == "/v1/responses" and sent.headers["authorization"] == f"Bearer {PLANTED_KEY}"
    assert sent.json() == {"model": "gpt-4o-mini", "input": "Hi", "instructions": "Be brief."}
    assert token not in sent_headers(fake_openai)


def test_the_openai_sdk_streams_a_response(responses_sdk, fake_openai):
    events = list(responses_sdk.responses.create(model="chat", input="Hi", stream=True))

    assert "".join(event.delta for event in events if event.type == "response.output_text.delta") == \
        "Hello from the fake"
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Hello from the fake"
    assert [event.sequence_number for event in events] == list(range(len(events)))


def test_responses_reach_azure_on_its_v1_route(responses_sdk, make_endpoint, azure_connection, fake_openai):
    make_endpoint("azure-chat", azure_connection, model="my-gpt4o-deployment")

    assert responses_sdk.responses.create(model="azure-chat", input="Hi").output_text == "Hello from the fake"
    sent = fake_openai.requests[0]
    assert sent.path == "/openai/v1/responses" and sent.headers["api-key"] == PLANTED_KEY
    assert sent.json()["model"] == "my-gpt4o-deployment"


def test_responses_refuse_endpoints_of_other_providers(responses_sdk, claude, fake_claude):
    with pytest.raises(openai.BadRequestError) as caught:
        responses_sdk.responses.create(model="claude", input="Hi")
    assert caught.value.body["code"] == "wrong_provider"
    assert fake_claude.requests == []


def test_the_body_size_limit_is_the_other_routes(site, token, claude, fake_claude):
    from gateway.views import MAX_BODY_BYTES

    huge = {"model": "claude", "max_tokens": 10, "messages": [{"role": "user", "content": "x" * MAX_BODY_BYTES}]}
    response = site.post("/gateway/anthropic/v1/messages", huge, content_type="application/json",
                         HTTP_X_API_KEY=token)

    assert response.status_code == 413
    assert json.loads(response.content)["error"]["type"] == "request_too_large"
    assert fake_claude.requests == []


# --- Claude on Vertex AI, through the Anthropic route ---------------------------------------------------


class FakeVertexClaude:
    """Claude on Vertex AI: `publishers/anthropic/models/<model>:rawPredict|streamRawPredict` and
    `count-tokens:rawPredict`, an access token from the fake token service; Anthropic's answers."""

    def __init__(self, token_valid):
        from tests.fakes.server import FakeServer

        self.token_valid = token_valid
        self.claude = FakeAnthropic()
        self.server = FakeServer(self.handle)

    def handle(self, request):
        from tests.fakes.server import Reply

        bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
        if not self.token_valid(bearer):
            return Reply.json({"error": {"code": 401, "message": "bad token", "status": "UNAUTHENTICATED"}}, 401)
        body = request.json()
        if body.get("anthropic_version") != "vertex-2023-10-16":
            return Reply.json({"error": {"code": 400, "message": "anthropic_version", "status": "INVALID_ARGUMENT"}},
                              400)
        prefix = "/v1/projects/my-project-123/locations/us-east5/publishers/anthropic/models/"
        if request.path == f"{prefix}count-tokens:rawPredict":
            return Reply.json({"input_tokens": 7})
        model, _, method = request.path.removeprefix(prefix).partition(":")
        if "model" in body or method not in ("rawPredict", "streamRawPredict"):
            return Reply.json({"error": {"code": 404, "message": "no such route", "status": "NOT_FOUND"}}, 404)
        if method == "streamRawPredict":
            return Reply(200, {"Content-Type": "text/event-stream"}, chunks=self.claude.events(model))
        return Reply.json({"id": "msg_vertex", "type": "message", "role": "assistant", "model": model,
                           "content": [{"type": "text", "text": "Hello from Claude on Vertex"}],
                           "stop_reason": "end_turn", "stop_sequence": None,
                           "usage": {"input_tokens": 5, "output_tokens": 6}})


@pytest.fixture
def vertex_claude(fake_google_token, service_account, make_connection, make_endpoint):
    fake = FakeVertexClaude(fake_google_token.valid)
    connection = make_connection("vertex-claude", provider="vertex_ai", auth_method="service_account",
                                 secrets={"service_account_json": service_account},
                                 config={"project_id": "my-project-123", "location": "us-east5",
                                         "base_url": fake.server.url})
    make_endpoint("vertex-claude", connection, model="claude-sonnet-4-5@20250929")
    yield fake
    fake.server.stop()
    fake.claude.stop()


def test_claude_on_vertex_through_the_anthropic_route(asgi_live_server, token, vertex_claude):
    with anthropic.Anthropic(base_url=f"{asgi_live_server.url}/gateway/anthropic", api_key=token,
                             max_retries=0, timeout=10) as client:
        message = client.messages.create(model="vertex-claude", max_tokens=10, messages=MESSAGES)
        with client.messages.stream(model="vertex-claude", max_tokens=10, messages=MESSAGES) as stream:
            text = "".join(stream.text_stream)
        counted = client.messages.count_tokens(model="vertex-claude", messages=MESSAGES)

    assert message.content[0].text == "Hello from Claude on Vertex"
    assert text == "Hello from Claude" and counted.input_tokens == 7
    sent = vertex_claude.server.requests
    assert [request.path.rsplit(":", 1)[-1] for request in sent] == ["rawPredict", "streamRawPredict", "rawPredict"]
    assert sent[0].path.endswith("/claude-sonnet-4-5@20250929:rawPredict")  # Vertex names versions with @
    assert sent[2].json()["model"] == "claude-sonnet-4-5@20250929"  # count-tokens names the model in the body
    assert token not in sent_headers(vertex_claude.server)


# --- Claude on Amazon Bedrock, through the Anthropic route ----------------------------------------------


@pytest.fixture
def bedrock_claude(make_connection, make_endpoint):
    from tests.fakes.bedrock import ACCESS_KEY_ID, FakeBedrock

    with FakeBedrock(secret_access_key=PLANTED_KEY) as fake:
        connection = make_connection(
            "bedrock", provider="bedrock", auth_method="access_key",
            secrets={"aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": PLANTED_KEY},
            config={"region": "us-east-1", "base_url": fake.url})
        make_endpoint("bedrock-claude", connection, model="anthropic.claude-sonnet-4-5-20250929-v1:0")
        make_endpoint("bedrock-nova", connection, model="amazon.nova-pro-v1:0")
        yield fake


def test_claude_on_bedrock_through_the_anthropic_route(claude_sdk, bedrock_claude):
    message = claude_sdk.messages.create(model="bedrock-claude", max_tokens=10, messages=MESSAGES,
                                         extra_headers={"anthropic-beta": "context-1m-2025-08-07"})
    with claude_sdk.messages.stream(model="bedrock-claude", max_tokens=10, messages=MESSAGES) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()

    assert message.id == "msg_bdrk_01" and message.content[0].text == "Hello from the fake"
    assert text == "Hello from the fake" and final.usage.output_tokens == 5
    sent = bedrock_claude.requests
    assert [request.path for request in sent] == [
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke",
        "/model/anthropic.claude-sonnet-4-5-20250929-v1%3A0/invoke-with-response-stream"]
    assert sent[0].json() == {"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": MESSAGES,
                              "anthropic_beta": ["context-1m-2025-08-07"]}
    assert sent[0].headers["authorization"].startswith("AWS4-HMAC-SHA256 ")  # signed, as the fake checked


def test_bedrock_endpoints_of_other_models_are_refused(claude_sdk, bedrock_claude):
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude_sdk.messages.create(model="bedrock-nova", max_tokens=10, messages=MESSAGES)
    assert "Claude models" in caught.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        claude_sdk.messages.count_tokens(model="bedrock-claude", messages=MESSAGES)
    assert bedrock_claude.requests == []
