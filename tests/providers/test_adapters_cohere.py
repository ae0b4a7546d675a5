"""The Cohere adapter against a fake v2 API: chat and embeddings both ways, streaming, errors, Test."""

import json

import httpx
import pytest

from providers.adapters.cohere import chat_request
from tests.conftest import PLANTED_KEY
from tests.fakes.cohere import FakeCohere
from tests.providers.adapter_checks import (
    assert_uncarried_options_refused,
    assert_error_table, assert_secret_never_leaves, assert_streams_incrementally, assert_task_refused_at_creation,
    assert_test_action, contents_of, events_of, invoke, invoke_error,
)
from tests.provider_fixtures import CHAT_BODY
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db

MODEL = "command-r-plus"


@pytest.fixture
def fake_cohere():
    with FakeCohere(keys={PLANTED_KEY}) as fake:
        yield fake


@pytest.fixture
def cohere(make_connection, fake_cohere):
    return make_connection("cohere", provider="cohere", config={"base_url": fake_cohere.url})


@pytest.fixture
def command(make_endpoint, cohere):
    return make_endpoint("command", cohere, model=MODEL)


@pytest.fixture
def embed(make_endpoint, cohere):
    return make_endpoint("cohere-embed", cohere, model="embed-v4.0", task="embeddings")


# --- Chat -----------------------------------------------------------------------------------------------


def test_a_chat_call_posts_v2_chat_with_the_key_as_bearer_and_mapped_parameters(command, fake_cohere):
    invoke(command, {
        "messages": [{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 20, "temperature": 0.3, "top_p": 0.8, "stop": ["END"], "logprobs": False,
    })

    [request] = fake_cohere.requests
    assert (request.method, request.target) == ("POST", "/v2/chat")
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"
    assert request.json() == {
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        "max_tokens": 20, "temperature": 0.3, "p": 0.8, "stop_sequences": ["END"],
    }


def test_tools_and_tool_messages_keep_openais_shape():
    call = {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}
    tools = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]
    request = chat_request(MODEL, {
        "messages": [{"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
                     {"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"}],
        "tools": tools, "tool_choice": "required", "max_completion_tokens": 9,
    })

    assert request["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather?"}]},
        {"role": "assistant", "tool_calls": [call]},
        {"role": "tool", "content": "Sunny", "tool_call_id": "call_1"},
    ]
    assert (request["tools"], request["tool_choice"], request["max_tokens"]) == (tools, "REQUIRED", 9)


def test_the_answer_is_an_openai_chat_completion(command, fake_cohere):
    answer = invoke(command, CHAT_BODY)

    assert answer["object"] == "chat.completion" and answer["id"] == "c14c80c3-fake" and answer["model"] == MODEL
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello from Command"},
                                  "finish_reason": "stop"}]
    assert answer["usage"] == {"prompt_tokens": 9, "completion_tokens": 4, "total_tokens": 13}


def test_usage_falls_back_to_billed_units(command, fake_cohere):
    fake_cohere.usage_key = "billed_units"

    assert invoke(command, CHAT_BODY)["usage"]["total_tokens"] == 13


@pytest.mark.parametrize("reason, expected", [("COMPLETE", "stop"), ("STOP_SEQUENCE", "stop"),
                                              ("MAX_TOKENS", "length"), ("ERROR", "stop")])
def test_finish_reasons_are_mapped(reason, expected, command, fake_cohere):
    fake_cohere.finish_reason = reason

    assert invoke(command, CHAT_BODY)["choices"][0]["finish_reason"] == expected


def test_tool_calls_come_back_in_openais_shape(command, fake_cohere):
    fake_cohere.tool_call = {"id": "tc_1", "name": "weather", "arguments": '{"city": "Oslo"}'}

    choice = invoke(command, CHAT_BODY)["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["tool_calls"] == [
        {"id": "tc_1", "type": "function", "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}]


# --- Embeddings -----------------------------------------------------------------------------------------


def test_embeddings_post_v2_embed_and_come_back_as_an_openai_list(embed, fake_cohere):
    answer = invoke(embed, {"input": ["one", "two"]})

    [request] = fake_cohere.requests
    assert (request.method, request.target) == ("POST", "/v2/embed")
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"
    assert request.json() == {"model": "embed-v4.0", "texts": ["one", "two"], "input_type": "search_document",
                              "embedding_types": ["float"]}
    assert answer["object"] == "list" and answer["model"] == "embed-v4.0"
    assert [(item["index"], item["embedding"]) for item in answer["data"]] == [(0, [0.5, 0.25, 0.0]),
                                                                             (1, [0.5, 0.25, 1.0])]
    assert answer["usage"] == {"prompt_tokens": 6, "completion_tokens": 0, "total_tokens": 6}


def test_a_single_string_input_is_one_text(embed, fake_cohere):
    assert len(invoke(embed, {"input": "hello"})["data"]) == 1
    assert fake_cohere.requests[0].json()["texts"] == ["hello"]


# --- Streaming ------------------------------------------------------------------------------------------


def test_a_stream_is_translated_to_openai_chunks_as_events_arrive(command, fake_cohere):
    received = assert_streams_incrementally(command, fake_cohere, CHAT_BODY, first="Hel", rest=" Command")

    assert fake_cohere.requests[0].json()["stream"] is True
    assert contents_of(received) == "Hello from Command"
    events = events_of(received)
    assert all(event["id"] == "c14c80c3-fake" and event["model"] == MODEL for event in events[:-1])
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in event for event in events[:-1])  # not asked for


def test_a_stream_asked_for_its_usage_ends_with_a_usage_chunk(command, fake_cohere):
    body = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    events = events_of(b"".join(invoke(command, body)))

    assert events[-3]["choices"][0]["finish_reason"] == "stop" and "usage" not in events[-3]
    assert events[-2]["choices"] == []
    assert events[-2]["usage"] == {"prompt_tokens": 70, "completion_tokens": 4, "total_tokens": 74}


def test_a_streamed_tool_call_arrives_as_tool_call_deltas(command, fake_cohere):
    fake_cohere.tool_call = {"id": "tc_1", "name": "weather", "arguments": '{"city": "Oslo"}'}

    events = events_of(b"".join(invoke(command, {**CHAT_BODY, "stream": True})))

    calls = [call for event in events[:-1] for call in event["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "tc_1", "type": "function", "function": {"name": "weather", "arguments": ""}}
    assert "".join(call["function"]["arguments"] for call in calls) == '{"city": "Oslo"}'
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_a_stream_through_the_gateway_route(client, admin_user, command, fake_cohere, site):
    _, token = ApiToken.issue(user=admin_user)
    response = site.post("/gateway/v1/chat/completions",
                           json.dumps({**CHAT_BODY, "model": "command", "stream": True}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200
    assert contents_of(b"".join(response.streaming_content)) == "Hello from Command"


# --- Errors, secrets, tasks -----------------------------------------------------------------------------


def test_upstream_errors_follow_the_gateway_error_table(command, fake_cohere):
    assert_error_table(command, fake_cohere, CHAT_BODY, "Cohere")


def test_embeddings_errors_follow_the_table_too(embed, fake_cohere):
    assert_error_table(embed, fake_cohere, {"input": "x"}, "Cohere")


def test_a_refused_key_says_so_in_cohere_words(command, fake_cohere):
    fake_cohere.keys.clear()

    error = invoke_error(command, CHAT_BODY)

    assert error.message == "Cohere rejected the connection's credentials (HTTP 401): invalid api token"


def test_the_key_never_leaves_in_answers_or_logs(command, fake_cohere, caplog):
    assert_secret_never_leaves(command, fake_cohere, CHAT_BODY, caplog)


def test_an_unknown_task_is_refused_at_endpoint_creation(cohere, admin_user):
    assert_task_refused_at_creation(admin_user, "cohere", "rerank", "rerank")


# --- Test action ----------------------------------------------------------------------------------------


def test_the_test_action_lists_one_model(cohere, fake_cohere, admin_user, client):
    assert_test_action("cohere", fake_cohere, "Cohere", admin_user, client, revoke=fake_cohere.keys.clear)

    request = fake_cohere.requests[0]
    assert (request.method, request.target) == ("GET", "/v1/models?page_size=1")
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"


def test_options_cohere_cannot_honour_are_refused_before_any_call(command, fake_cohere):
    assert_uncarried_options_refused(command, fake_cohere, "Cohere", carried=("seed",))
