"""The Anthropic adapter against a fake Messages API: translation both ways, streaming, errors, Test."""

import json
import threading

import pytest

from connections.models import Connection
from providers.adapters.anthropic import DEFAULT_MAX_TOKENS, messages_request
from tests.conftest import PLANTED_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.providers.adapter_checks import (
    assert_uncarried_options_refused,
    assert_error_table, assert_secret_never_leaves, assert_streams_incrementally, assert_task_refused_at_creation,
    assert_test_action, contents_of, events_of, invoke, invoke_error,
)
from tests.provider_fixtures import CHAT_BODY
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db

MODEL = "claude-sonnet-4-5"


@pytest.fixture
def fake_anthropic():
    with FakeAnthropic(keys={PLANTED_KEY}) as fake:
        yield fake


@pytest.fixture
def claude(make_connection, make_endpoint, fake_anthropic):
    connection = make_connection("claude", provider="anthropic", config={"base_url": fake_anthropic.url})
    return make_endpoint("claude-chat", connection, model=MODEL)


# --- Requests -------------------------------------------------------------------------------------------


def test_a_chat_call_posts_messages_with_the_key_header_and_version(claude, fake_anthropic):
    answer = invoke(claude, CHAT_BODY)

    [request] = fake_anthropic.requests
    assert (request.method, request.target) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == PLANTED_KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.json() == {"model": MODEL, "max_tokens": DEFAULT_MAX_TOKENS,
                              "messages": [{"role": "user", "content": "Say hello"}]}
    assert answer["object"] == "chat.completion"


def test_system_parameters_and_stop_are_mapped_to_anthropic_names(claude, fake_anthropic):
    invoke(claude, {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Again"},
        ],
        "max_completion_tokens": 50, "temperature": 0.2, "top_p": 0.9, "stop": "END",
        "presence_penalty": 0, "n": 1, "logprobs": False,  # no Anthropic equivalent, at their defaults: not sent
    })

    assert fake_anthropic.requests[0].json() == {
        "model": MODEL, "max_tokens": 50, "system": "Be brief.\n\nAnswer in English.",
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."},
                     {"role": "user", "content": "Again"}],
        "temperature": 0.2, "top_p": 0.9, "stop_sequences": ["END"],
    }


def test_max_tokens_and_a_list_of_stops_pass_through():
    request = messages_request(MODEL, {"messages": [{"role": "user", "content": "x"}], "max_tokens": 7,
                                       "stop": ["a", "b"]})
    assert (request["max_tokens"], request["stop_sequences"]) == (7, ["a", "b"])


def test_images_tools_and_tool_results_become_anthropic_blocks():
    request = messages_request(MODEL, {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                                         {"type": "image_url", "image_url": {"url": "https://img.example/a.png"}}]},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "weather", "arguments": '{"city":"Oslo"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "Sunny"},
            {"role": "tool", "tool_call_id": "call_2", "content": "Windy"},
        ],
        "tools": [{"type": "function", "function": {"name": "weather", "description": "Weather now",
                                                    "parameters": {"type": "object"}}}],
        "tool_choice": "required",
    })

    user, assistant, results = request["messages"]
    assert user["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
        {"type": "image", "source": {"type": "url", "url": "https://img.example/a.png"}},
    ]
    assert assistant == {"role": "assistant", "content": [
        {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}}]}
    assert results == {"role": "user", "content": [  # consecutive tool results: one user turn
        {"type": "tool_result", "tool_use_id": "call_1", "content": "Sunny"},
        {"type": "tool_result", "tool_use_id": "call_2", "content": "Windy"}]}
    assert request["tools"] == [{"name": "weather", "description": "Weather now", "input_schema": {"type": "object"}}]
    assert request["tool_choice"] == {"type": "any"}


# --- Answers --------------------------------------------------------------------------------------------


def test_the_answer_is_an_openai_chat_completion(claude, fake_anthropic):
    answer = invoke(claude, CHAT_BODY)

    assert answer["id"] == "msg_fake01" and answer["model"] == MODEL
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello from Claude"},
                                  "finish_reason": "stop"}]
    assert answer["usage"] == {"prompt_tokens": 15, "completion_tokens": 6, "total_tokens": 21,
                               "prompt_tokens_details": {"cached_tokens": 3}}  # cache reads count as prompt


@pytest.mark.parametrize("stop_reason, finish_reason", [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
])
def test_stop_reasons_are_mapped(stop_reason, finish_reason, claude, fake_anthropic):
    fake_anthropic.stop_reason = stop_reason

    assert invoke(claude, CHAT_BODY)["choices"][0]["finish_reason"] == finish_reason


def test_tool_use_blocks_become_tool_calls(claude, fake_anthropic):
    fake_anthropic.tool_use = {"id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}

    choice = invoke(claude, CHAT_BODY)["choices"][0]

    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call == {"id": "toolu_1", "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Oslo"}'}}


# --- Streaming ------------------------------------------------------------------------------------------


def test_a_stream_is_translated_to_openai_chunks_as_events_arrive(claude, fake_anthropic):
    received = assert_streams_incrementally(claude, fake_anthropic, CHAT_BODY, first="Hel", rest=" Claude")

    assert fake_anthropic.requests[0].json()["stream"] is True
    assert fake_anthropic.requests[0].headers["accept"] == "text/event-stream"
    assert contents_of(received) == "Hello from Claude"
    events = events_of(received)
    assert all(event["object"] == "chat.completion.chunk" and event["id"] == "msg_fake01"
               for event in events[:-1])
    assert events[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert events[-2]["choices"][0]["finish_reason"] == "stop"
    assert all("usage" not in event for event in events[:-1])  # not asked for
    assert events[-1] == "[DONE]"


def test_a_stream_asked_for_its_usage_ends_with_a_usage_chunk(claude, fake_anthropic):
    body = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    events = events_of(b"".join(invoke(claude, body)))

    assert events[-3]["choices"][0]["finish_reason"] == "stop" and "usage" not in events[-3]
    assert events[-2]["choices"] == []
    assert events[-2]["usage"] == {"prompt_tokens": 12, "completion_tokens": 6, "total_tokens": 18}
    assert events[-1] == "[DONE]"


def test_a_streamed_tool_call_arrives_as_tool_call_deltas(claude, fake_anthropic):
    fake_anthropic.tool_use = {"id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}

    events = events_of(b"".join(invoke(claude, {**CHAT_BODY, "stream": True})))

    calls = [call for event in events[:-1] for call in event["choices"][0]["delta"].get("tool_calls", [])]
    assert calls[0] == {"index": 0, "id": "toolu_1", "type": "function",
                        "function": {"name": "weather", "arguments": ""}}
    assert "".join(call["function"]["arguments"] for call in calls) == '{"city": "Oslo"}'
    assert events[-2]["choices"][0]["finish_reason"] == "tool_calls"


def test_an_error_event_mid_stream_becomes_an_openai_error_event_then_done(claude, fake_anthropic):
    fake_anthropic.stream_error = f"Overloaded (key {PLANTED_KEY})"

    received = b"".join(invoke(claude, {**CHAT_BODY, "stream": True}))

    events = events_of(received)
    assert events[-2]["error"]["code"] == "upstream_error"
    assert events[-2]["error"]["message"].startswith("Anthropic reported an error during the stream: Overloaded")
    assert events[-1] == "[DONE]"
    assert PLANTED_KEY not in received.decode()


def test_a_stream_that_stalls_ends_with_a_timeout_event_then_done(claude, fake_anthropic, settings):
    settings.GATEWAY_TIMEOUT = 0.3
    fake_anthropic.stream_gate = threading.Event()  # never released

    events = events_of(b"".join(invoke(claude, {**CHAT_BODY, "stream": True})))

    assert events[-2]["error"]["code"] == "upstream_timeout" and events[-1] == "[DONE]"


def test_closing_an_unread_stream_releases_the_provider_connection(claude, fake_anthropic):
    stream = invoke(claude, {**CHAT_BODY, "stream": True})
    stream.close()

    assert stream.response.is_closed


def test_a_stream_through_the_gateway_route(client, admin_user, claude, fake_anthropic, site):
    _, token = ApiToken.issue(user=admin_user)
    response = site.post("/gateway/v1/chat/completions", json.dumps({**CHAT_BODY, "model": "claude-chat",
                                                                       "stream": True}),
                           content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    assert contents_of(b"".join(response.streaming_content)) == "Hello from Claude"


# --- Errors, secrets, tasks -----------------------------------------------------------------------------


def test_upstream_errors_follow_the_gateway_error_table(claude, fake_anthropic):
    assert_error_table(claude, fake_anthropic, CHAT_BODY, "Anthropic")


def test_anthropic_error_shape_gives_its_message_and_type(claude, fake_anthropic):
    fake_anthropic.fail(404, "model: claude-nope")

    error = invoke_error(claude, CHAT_BODY)

    assert (error.status, error.code, error.message) == (404, "not_found_error", "model: claude-nope")


def test_the_key_never_leaves_in_answers_or_logs(claude, fake_anthropic, caplog):
    assert_secret_never_leaves(claude, fake_anthropic, CHAT_BODY, caplog)


def test_a_rotated_key_is_used_by_the_next_call(claude, fake_anthropic):
    rotated = "sk-ant-rotated-0123456789-ABCDEFGHIJ"
    fake_anthropic.keys.add(rotated)
    connection = Connection.objects.get(name="claude")
    connection.update_secrets({"api_key": rotated})
    connection.save()

    invoke(claude, CHAT_BODY)

    assert fake_anthropic.presented_keys() == [rotated]


def test_embeddings_are_refused_at_endpoint_creation(claude, admin_user):
    assert_task_refused_at_creation(admin_user, "claude", "embeddings", "Anthropic does not support embeddings")


# --- Test action ----------------------------------------------------------------------------------------


def test_the_test_action_lists_one_model(claude, fake_anthropic, admin_user, client):
    assert_test_action("claude", fake_anthropic, "Anthropic", admin_user, client, revoke=fake_anthropic.keys.clear)

    request = fake_anthropic.requests[0]
    assert (request.method, request.target) == ("GET", "/v1/models?limit=1")
    assert request.headers["x-api-key"] == PLANTED_KEY and request.headers["anthropic-version"] == "2023-06-01"


def test_options_anthropic_cannot_honour_are_refused_before_any_call(claude, fake_anthropic):
    assert_uncarried_options_refused(claude, fake_anthropic, "Anthropic")
