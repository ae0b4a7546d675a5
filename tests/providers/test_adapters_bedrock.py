"""Amazon Bedrock against a fake that verifies SigV4 with botocore: Converse, streams, embeddings, errors, Test."""

import json
import logging
import threading

import httpx
import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Endpoint
from providers.adapters import adapter_for
from providers.adapters.bedrock import BedrockAdapter, control_base, converse_request, signed_call
from providers.errors import GatewayError
from tests.conftest import PLANTED_KEY
from tests.fakes.bedrock import ACCESS_KEY_ID, REGION, FakeBedrock
from tests.providers.adapter_checks import assert_uncarried_options_refused
from tokens.models import ApiToken
from tests.provider_calls import run

pytestmark = pytest.mark.django_db

CLAUDE = "anthropic.claude-3-haiku-20240307-v1:0"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEplanted-SESSION-token-0123456789abcdefXYZ"
BEDROCK_API_KEY = "ABSKQmVkcm9ja0FQSUtleS1planted-api-key-0123456789"
ROTATED_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYrotatedKEY"
CHAT = {"messages": [{"role": "user", "content": "Say hello"}]}


@pytest.fixture
def fake_bedrock():
    with FakeBedrock(secret_access_key=PLANTED_KEY, api_keys={BEDROCK_API_KEY}) as fake:
        yield fake


@pytest.fixture
def bedrock_connection(make_connection, fake_bedrock) -> Connection:
    return make_connection(
        "bedrock-prod", provider="bedrock", auth_method="access_key",
        secrets={"aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": PLANTED_KEY},
        config={"region": REGION, "base_url": fake_bedrock.url},
    )


@pytest.fixture
def claude(make_endpoint, bedrock_connection) -> Endpoint:
    return make_endpoint("claude", bedrock_connection, model=CLAUDE)


def invoke(endpoint: Endpoint, body: dict):
    endpoint = Endpoint.objects.prefetch_related("destinations__connection").get(pk=endpoint.pk)  # as a route loads it
    return run(adapter_for(endpoint.destinations.get().connection.provider).invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, body))


def stream_documents(received: bytes) -> list[dict]:
    return [json.loads(line[6:]) for line in received.decode().splitlines() if line.startswith("data: {")]


def raised_by(endpoint: Endpoint, body: dict) -> GatewayError:
    with pytest.raises(GatewayError) as raised:
        invoke(endpoint, body)
    return raised.value


# --- Chat -----------------------------------------------------------------------------------------------


def test_chat_goes_to_converse_signed_with_sigv4_and_answers_in_openai_shape(claude, fake_bedrock):
    answer = invoke(claude, {**CHAT, "max_tokens": 100, "temperature": 0.2, "top_p": 0.9, "stop": "END"})

    assert answer["object"] == "chat.completion" and answer["model"] == CLAUDE
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "Hello from the fake"}
    assert answer["choices"][0]["finish_reason"] == "stop"
    assert answer["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
    [request] = fake_bedrock.requests
    assert request.target == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse"
    assert request.headers["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/")
    assert f"/{REGION}/bedrock/aws4_request" in request.headers["authorization"]
    assert "x-amz-security-token" not in request.headers
    assert request.json() == {
        "messages": [{"role": "user", "content": [{"text": "Say hello"}]}],
        "inferenceConfig": {"maxTokens": 100, "temperature": 0.2, "topP": 0.9, "stopSequences": ["END"]},
    }
    assert PLANTED_KEY not in request.target and PLANTED_KEY not in str(request.headers)


def test_openai_messages_map_to_converse_turns():
    body = {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Use English."}]},
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "What is the weather?"}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Rain"},
        ],
        "max_completion_tokens": 50,
        "stop": ["a", "b"],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": "required",
    }

    assert converse_request(body) == {
        "system": [{"text": "Be brief.\n\nUse English."}],
        "messages": [
            {"role": "user", "content": [{"text": "Hi"}, {"text": "What is the weather?"}]},
            {"role": "assistant", "content": [{"toolUse": {"toolUseId": "call_1", "name": "weather",
                                                           "input": {"city": "Oslo"}}}]},
            {"role": "user", "content": [{"toolResult": {"toolUseId": "call_1", "content": [{"text": "Rain"}]}}]},
        ],
        "inferenceConfig": {"maxTokens": 50, "stopSequences": ["a", "b"]},
        "toolConfig": {"tools": [{"toolSpec": {"name": "weather", "description": "Weather now",
                                               "inputSchema": {"json": {"type": "object"}}}}],
                       "toolChoice": {"any": {}}},
    }


def test_a_conversation_merged_from_many_messages_is_accepted_by_converse(claude, fake_bedrock):
    messages = [{"role": "system", "content": "S"}, {"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"}, {"role": "assistant", "content": "d"},
                {"role": "user", "content": "e"}]

    assert invoke(claude, {"messages": messages})["object"] == "chat.completion"  # the fake checks alternation
    assert [turn["role"] for turn in fake_bedrock.requests[0].json()["messages"]] == ["user", "assistant", "user"]


def test_a_conversation_starting_with_the_assistant_is_a_400_before_any_call(claude, fake_bedrock):
    error = raised_by(claude, {"messages": [{"role": "assistant", "content": "Hello"}]})

    assert (error.status, error.code) == (400, "invalid_body") and "start with a user message" in error.message
    assert fake_bedrock.requests == []


@pytest.mark.parametrize("stop_reason, finish_reason", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"),
    ("content_filtered", "content_filter"), ("guardrail_intervened", "content_filter"),
])
def test_stop_reasons_map_to_finish_reasons(stop_reason, finish_reason, claude, fake_bedrock):
    fake_bedrock.stop_reason = stop_reason

    assert invoke(claude, CHAT)["choices"][0]["finish_reason"] == finish_reason


def test_a_tool_use_answer_becomes_tool_calls(claude, fake_bedrock):
    fake_bedrock.stop_reason = "tool_use"
    fake_bedrock.reply_content = [{"text": "Checking."},
                                  {"toolUse": {"toolUseId": "tooluse_1", "name": "weather", "input": {"city": "Oslo"}}}]

    choice = invoke(claude, CHAT)["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": "tooluse_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}
    ]


# --- Streaming ------------------------------------------------------------------------------------------


def test_a_stream_is_decoded_and_translated_as_it_arrives(claude, fake_bedrock):
    fake_bedrock.stream_gate = threading.Event()  # the fake holds the rest until released
    stream = iter(invoke(claude, {**CHAT, "stream": True}))

    received = b""
    while b'"Hel"' not in received:
        received += next(stream)  # arrives while Bedrock still holds back the rest
    assert b" fake" not in received
    fake_bedrock.stream_gate.set()
    received += b"".join(stream)

    documents = stream_documents(received)
    assert documents[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert "".join(d["choices"][0]["delta"].get("content") or "" for d in documents) == "Hello from the fake"
    assert documents[-1]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in d for d in documents)  # not asked for
    assert {d["model"] for d in documents} == {CLAUDE} and len({d["id"] for d in documents}) == 1
    assert received.endswith(b"data: [DONE]\n\n") and received.count(b"[DONE]") == 1
    request = fake_bedrock.requests[0]
    assert request.path == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    assert request.headers["accept"] == "application/vnd.amazon.eventstream"


def test_a_stream_asked_for_its_usage_ends_with_a_usage_chunk(claude, fake_bedrock):
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    documents = stream_documents(b"".join(invoke(claude, body)))

    assert documents[-2]["choices"][0]["finish_reason"] == "stop" and "usage" not in documents[-2]
    assert documents[-1]["choices"] == []
    assert documents[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}


def test_an_exception_inside_a_stream_ends_it_with_an_openai_error_then_done(claude, fake_bedrock):
    fake_bedrock.stream_exception = ("throttlingException", "Too many tokens, please wait before trying again.")

    received = b"".join(invoke(claude, {**CHAT, "stream": True}))

    events = [line[6:] for line in received.decode().splitlines() if line.startswith("data: ")]
    error = json.loads(events[-2])["error"]
    assert error["code"] == "upstream_rate_limited" and "Too many tokens" in error["message"]
    assert events[-1] == "[DONE]"


def test_a_stream_refused_before_it_starts_is_an_ordinary_error(claude, fake_bedrock):
    fake_bedrock.fail(403, "AccessDeniedException", "User is not authorized to perform bedrock:InvokeModel")

    error = raised_by(claude, {**CHAT, "stream": True})

    assert (error.status, error.code) == (401, "upstream_credentials_rejected")


# --- Embeddings -----------------------------------------------------------------------------------------


def test_titan_embeddings_send_one_request_per_input(make_endpoint, bedrock_connection, fake_bedrock):
    endpoint = make_endpoint("titan", bedrock_connection, model="amazon.titan-embed-text-v2:0", task="embeddings")

    answer = invoke(endpoint, {"input": ["one two", "three"], "dimensions": 256})

    assert answer["object"] == "list" and answer["model"] == "amazon.titan-embed-text-v2:0"
    assert [item["embedding"] for item in answer["data"]] == [[0.5, -0.25, 7.0], [0.5, -0.25, 5.0]]
    assert answer["usage"]["prompt_tokens"] == 3
    assert [r.target for r in fake_bedrock.requests] == ["/model/amazon.titan-embed-text-v2%3A0/invoke"] * 2
    assert [r.json() for r in fake_bedrock.requests] == [{"inputText": "one two", "dimensions": 256},
                                                        {"inputText": "three", "dimensions": 256}]


def test_cohere_embeddings_send_the_texts_in_one_request(make_endpoint, bedrock_connection, fake_bedrock):
    endpoint = make_endpoint("cohere", bedrock_connection, model="cohere.embed-english-v3", task="embeddings")

    answer = invoke(endpoint, {"input": ["a", "b", "c"]})

    assert [item["index"] for item in answer["data"]] == [0, 1, 2]
    assert answer["data"][2]["embedding"] == [0.1, 0.2, 2.0]
    [request] = fake_bedrock.requests
    assert request.json() == {"texts": ["a", "b", "c"], "input_type": "search_document"}


def test_an_embeddings_model_of_another_family_is_a_clear_400(make_endpoint, bedrock_connection, fake_bedrock):
    endpoint = make_endpoint("other", bedrock_connection, model="mistral.embed-x", task="embeddings")

    error = raised_by(endpoint, {"input": "a"})

    assert error.status == 400 and "Titan" in error.message and "Cohere" in error.message
    assert fake_bedrock.requests == []


# --- Errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, error_type, message, expected_status, expected_code", [
    (403, "UnrecognizedClientException", "The security token included in the request is invalid.", 401,
     "upstream_credentials_rejected"),
    (403, "AccessDeniedException", "User: arn:aws:iam::123456789012:user/app is not authorized to perform it",
     401, "upstream_credentials_rejected"),
    (429, "ThrottlingException", "Too many requests, please wait before trying again.", 429, "upstream_rate_limited"),
    (500, "InternalServerException", "Internal server error.", 502, "upstream_error"),
    (503, "ServiceUnavailableException", "Service unavailable.", 502, "upstream_error"),
    (400, "ValidationException", "The provided model identifier is invalid.", 400, "ValidationException"),
    (404, "ResourceNotFoundException", "Could not resolve the foundation model.", 404, "ResourceNotFoundException"),
])
def test_bedrock_errors_map_to_the_gateways_error_table(status, error_type, message, expected_status, expected_code, claude,
                                             fake_bedrock):
    fake_bedrock.fail(status, error_type, message)

    error = raised_by(claude, CHAT)

    assert (error.status, error.code, error.upstream_status) == (expected_status, expected_code, status)
    assert message in error.message
    if expected_status == 429:
        assert error.retry_after == "1"


def test_a_wrong_secret_fails_the_signature_check(make_connection, make_endpoint, fake_bedrock):
    fake_bedrock.secret_access_key = "a-different-secret-the-fake-expects-000"

    error = raised_by(make_endpoint("claude", make_connection(
        "bedrock-prod", provider="bedrock", auth_method="access_key",
        secrets={"aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": PLANTED_KEY},
        config={"region": REGION, "base_url": fake_bedrock.url}), model=CLAUDE), CHAT)

    assert (error.status, error.code) == (401, "upstream_credentials_rejected")
    assert "signature we calculated does not match" in error.message


def test_the_fake_rejects_a_tampered_request_and_accepts_the_signed_one(bedrock_connection, fake_bedrock):
    connection = Connection.objects.get(pk=bedrock_connection.pk)
    url = f"{fake_bedrock.url}/model/{CLAUDE.replace(':', '%3A')}/converse"
    call = signed_call(connection.account(), "POST", url, converse_request(CHAT))
    tampered = call.content.replace(b"Say hello", b"Say byebye")

    with httpx.Client() as client:
        good = client.post(call.url, headers=call.headers, content=call.content)
        bad = client.post(call.url, headers=call.headers, content=tampered)
        other_region = client.post(call.url, headers={**call.headers, "authorization": call.headers[
            "Authorization"].replace("us-east-1", "eu-west-1")}, content=call.content)

    assert good.status_code == 200
    assert bad.status_code == 403 and bad.headers["x-amzn-errortype"].startswith("InvalidSignatureException")
    assert other_region.status_code == 403


def test_a_session_token_is_sent_and_signed(make_connection, make_endpoint, fake_bedrock):
    fake_bedrock.session_token = SESSION_TOKEN  # temporary credentials: the fake now requires it
    connection = make_connection(
        "bedrock-sts", provider="bedrock", auth_method="access_key",
        secrets={"aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": PLANTED_KEY,
                 "aws_session_token": SESSION_TOKEN},
        config={"region": REGION, "base_url": fake_bedrock.url},
    )

    invoke(make_endpoint("claude", connection, model=CLAUDE), CHAT)

    request = fake_bedrock.requests[0]
    assert request.headers["x-amz-security-token"] == SESSION_TOKEN
    assert "x-amz-security-token" in request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]


def test_temporary_credentials_without_their_session_token_are_refused(claude, fake_bedrock):
    fake_bedrock.session_token = SESSION_TOKEN

    assert raised_by(claude, CHAT).status == 401


def test_a_rotated_secret_signs_the_next_call(claude, fake_bedrock, admin_user):
    invoke(claude, CHAT)
    fake_bedrock.secret_access_key = ROTATED_SECRET
    connection = Connection.objects.get(pk=claude.destinations.get().connection.pk)
    connection.update_secrets({"aws_secret_access_key": ROTATED_SECRET})
    connection.full_clean()
    connection_save(connection=connection, actor=admin_user)

    assert invoke(claude, CHAT)["object"] == "chat.completion"
    assert len(fake_bedrock.requests) == 2


# --- Bedrock API key ------------------------------------------------------------------------------------


@pytest.fixture
def api_key_claude(make_connection, make_endpoint, fake_bedrock) -> Endpoint:
    connection = make_connection("bedrock-key", provider="bedrock", secrets={"api_key": BEDROCK_API_KEY},
                                 config={"region": REGION, "base_url": fake_bedrock.url})
    return make_endpoint("claude-key", connection, model=CLAUDE)


def test_an_api_key_is_sent_as_bearer_without_signing(api_key_claude, fake_bedrock):
    invoke(api_key_claude, CHAT)

    request = fake_bedrock.requests[0]
    assert request.headers["authorization"] == f"Bearer {BEDROCK_API_KEY}"
    assert "x-amz-date" not in request.headers


def test_a_revoked_api_key_is_a_401(api_key_claude, fake_bedrock):
    fake_bedrock.api_keys.clear()

    error = raised_by(api_key_claude, CHAT)

    assert (error.status, error.code) == (401, "upstream_credentials_rejected")
    assert BEDROCK_API_KEY not in error.message


# --- Test action ----------------------------------------------------------------------------------------


@pytest.fixture
def api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def test_the_test_action_lists_foundation_models_signed_like_traffic(api, bedrock_connection, fake_bedrock):
    response = api.post("/api/v1/connections/bedrock-prod/test/")

    assert response.json() == {"ok": True, "status": 200, "message": "Amazon Bedrock accepted the credentials."}
    [request] = fake_bedrock.requests
    assert (request.method, request.target) == ("GET", "/foundation-models?byOutputModality=EMBEDDING")
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 ")


def test_the_test_action_reports_a_revoked_key_without_showing_it(api, bedrock_connection, fake_bedrock):
    fake_bedrock.access_key_id = "AKIADIFFERENTKEY0000"  # the key was deactivated

    response = api.post("/api/v1/connections/bedrock-prod/test/")

    body = response.json()
    assert body["ok"] is False and body["status"] == 403
    assert "security token included in the request is invalid" in body["message"]
    assert PLANTED_KEY not in response.content.decode() and ACCESS_KEY_ID not in response.content.decode()


def test_the_test_button_on_the_page(client, admin_user, bedrock_connection, fake_bedrock):
    client.force_login(admin_user)

    assert "Amazon Bedrock accepted the credentials." in client.post(
        "/settings/connections/bedrock-prod/test/", follow=True).content.decode()
    fake_bedrock.secret_access_key = ROTATED_SECRET
    text = client.post("/settings/connections/bedrock-prod/test/", follow=True).content.decode()
    assert "failed (provider status 403)" in text and PLANTED_KEY not in text


@pytest.mark.parametrize("base_url, expected", [
    ("", "https://bedrock.eu-west-1.amazonaws.com"),
    ("https://bedrock-runtime.eu-west-1.amazonaws.com", "https://bedrock.eu-west-1.amazonaws.com"),
    ("https://vpce-0a1b-c2d3.bedrock-runtime.eu-west-1.vpce.amazonaws.com",
     "https://vpce-0a1b-c2d3.bedrock.eu-west-1.vpce.amazonaws.com"),
    ("https://llm-proxy.example.com/aws", "https://llm-proxy.example.com/aws"),
])
def test_the_control_plane_address_follows_the_runtime_address(base_url, expected, make_connection):
    config = {"region": "eu-west-1", **({"base_url": base_url} if base_url else {})}
    connection = make_connection("b", provider="bedrock", secrets={"api_key": BEDROCK_API_KEY}, config=config)

    assert control_base(connection.account()) == expected


def test_the_default_runtime_address_has_the_region(make_connection, make_endpoint):
    connection = make_connection("b", provider="bedrock", secrets={"api_key": BEDROCK_API_KEY},
                                 config={"region": "ap-south-1"})
    call = run(BedrockAdapter().build_call(connection.account(), make_endpoint("c", connection, model=CLAUDE).destinations.get().target, CHAT))

    assert call.url == "https://bedrock-runtime.ap-south-1.amazonaws.com/model/" \
                       "anthropic.claude-3-haiku-20240307-v1%3A0/converse"


# --- Secrets stay secret --------------------------------------------------------------------------------


def test_no_secret_reaches_responses_or_logs(client, make_connection, make_endpoint, fake_bedrock, caplog,
                                             django_user_model, site):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="botocore")  # even with botocore's own debug logging on
    fake_bedrock.session_token = SESSION_TOKEN
    connection = make_connection(
        "bedrock-sts", provider="bedrock", auth_method="access_key",
        secrets={"aws_access_key_id": ACCESS_KEY_ID, "aws_secret_access_key": PLANTED_KEY,
                 "aws_session_token": SESSION_TOKEN},
        config={"region": REGION, "base_url": fake_bedrock.url},
    )
    make_endpoint("claude", connection, model=CLAUDE)
    user = django_user_model.objects.create_user("svc")
    user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    _, api_token = ApiToken.issue(user=user)

    def chat(stream: bool = False):
        response = site.post("/gateway/v1/chat/completions",
                               json.dumps({**CHAT, "model": "claude", "stream": stream}),
                               content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {api_token}")
        return b"".join(response.streaming_content) if stream else response.content

    answers = [chat(), chat(stream=True)]
    fake_bedrock.fail(400, "ValidationException", f"Bad header X-Amz-Security-Token={SESSION_TOKEN} for "
                                                  f"{ACCESS_KEY_ID}")
    answers.append(chat())
    fake_bedrock.session_token = "another-session-token-0000000000000000"
    answers.append(chat())

    assert b"Hello from the fake" in answers[0] and b"[DONE]" in answers[1]
    assert b"ValidationException" in answers[2] and b"upstream_credentials_rejected" in answers[3]
    assert "Connection bedrock-sts: provider answered 403" in caplog.text
    for value in (PLANTED_KEY, SESSION_TOKEN, ACCESS_KEY_ID):
        assert value not in caplog.text
        assert all(value.encode() not in answer for answer in answers)


def test_options_bedrock_cannot_honour_are_refused_before_any_call(claude, fake_bedrock):
    assert_uncarried_options_refused(claude, fake_bedrock, "Amazon Bedrock")
