"""The Gemini adapter against a fake Gemini API: OpenAI ↔ Gemini translation, streaming, errors, the Test action."""

import json
import logging
import threading

import pytest
from rest_framework.test import APIClient

from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Endpoint
from providers.adapters import adapter_for
from providers.adapters.gemini import GeminiAdapter, chat_request, chat_response
from providers.errors import GatewayError
from tests.conftest import PLANTED_KEY
from tests.providers.adapter_checks import assert_uncarried_options_refused
from tests.gateway.test_views import error_of, post
from tests.provider_calls import run

pytestmark = pytest.mark.django_db

ROTATED_KEY = "AIzaSyRotated-0123456789-abcdefghijKLM"


def invoke(endpoint: Endpoint, body: dict):
    endpoint = Endpoint.objects.prefetch_related("destinations__connection").get(pk=endpoint.pk)
    return run(adapter_for(endpoint.destinations.get().connection.provider).invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, body))


def data_events(stream: bytes) -> list[str]:
    return [line[6:] for line in stream.decode().splitlines() if line.startswith("data: ")]


@pytest.fixture
def gemini_embed(make_endpoint, gemini_connection) -> Endpoint:
    return make_endpoint("gemini-embed", gemini_connection, model="text-embedding-004", task="embeddings")


# --- Chat -----------------------------------------------------------------------------------------------


def test_chat_is_translated_to_generate_content_with_the_key_in_a_header(gemini_chat, fake_gemini):
    answer = invoke(gemini_chat, {
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]},
            {"role": "user", "content": "Say hello"},
            {"role": "user", "content": [{"type": "text", "text": "again"}]},
        ],
        "temperature": 0.2, "top_p": 0.9, "max_tokens": 50, "stop": "END", "n": 1,
    })

    [request] = fake_gemini.requests
    assert (request.method, request.path) == ("POST", "/v1beta/models/gemini-2.0-flash:generateContent")
    assert request.query == {}
    assert request.headers["x-goog-api-key"] == PLANTED_KEY
    assert "authorization" not in request.headers
    assert request.json() == {
        "contents": [
            {"role": "user", "parts": [{"text": "Hi"}]},
            {"role": "model", "parts": [{"text": "Hello."}]},
            {"role": "user", "parts": [{"text": "Say hello"}, {"text": "again"}]},
        ],
        "systemInstruction": {"parts": [{"text": "Be brief.\n\nAnswer in English."}]},
        "generationConfig": {"temperature": 0.2, "topP": 0.9, "maxOutputTokens": 50, "stopSequences": ["END"]},
    }
    assert answer["object"] == "chat.completion"
    assert answer["id"] == "chatcmpl-fake-response-1"
    assert answer["choices"] == [{"index": 0, "message": {"role": "assistant", "content": "Hello from Gemini"},
                                  "finish_reason": "stop"}]
    assert answer["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_max_completion_tokens_and_a_stop_list_and_json_mode_are_mapped(gemini_chat, fake_gemini):
    invoke(gemini_chat, {"messages": [{"role": "user", "content": "x"}], "max_completion_tokens": 9,
                         "stop": ["a", "b"], "response_format": {"type": "json_object"}, "seed": 3})

    assert fake_gemini.requests[0].json()["generationConfig"] == {
        "maxOutputTokens": 9, "stopSequences": ["a", "b"], "responseMimeType": "application/json", "seed": 3,
    }


def test_an_inline_image_becomes_inline_data(gemini_chat, fake_gemini):
    invoke(gemini_chat, {"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
    ]}]})

    assert fake_gemini.requests[0].json()["contents"][0]["parts"] == [
        {"text": "What is this?"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
    ]


@pytest.mark.parametrize("body, words", [
    ({"n": 2}, "'n' cannot be carried to Gemini"),
    ({"tools": [{"type": "web_search"}]}, "'tools' other than functions"),
    ({"messages": [{"role": "tool", "content": "42", "tool_call_id": "c1"}]}, "must answer a tool call"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c1"}]}]}, "needs a 'function'"),
    ({"parallel_tool_calls": False}, "'parallel_tool_calls' cannot be carried to Gemini"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "https://x.test/a.png"}}]}]},
     "only inline"),
    ({"messages": [{"role": "system", "content": "only a system message"}]}, "no user or assistant text"),
])
def test_what_cannot_be_translated_is_a_clear_400_before_any_call(gemini_chat, fake_gemini, body, words):
    with pytest.raises(GatewayError) as raised:
        invoke(gemini_chat, {"messages": [{"role": "user", "content": "hi"}], **body})

    assert raised.value.status == 400 and words in raised.value.message
    assert fake_gemini.requests == []


def test_options_gemini_cannot_honour_are_refused_before_any_call(gemini_chat, fake_gemini):
    assert_uncarried_options_refused(gemini_chat, fake_gemini, "Gemini",
                                     carried=("seed", "response_format", "tools", "tool_choice"))


@pytest.mark.parametrize("reason, expected, content", [
    ("STOP", "stop", "ab"), ("MAX_TOKENS", "length", "ab"), ("MALFORMED_FUNCTION_CALL", "stop", "ab"),
    # a flagged answer is withheld (OpenAI's content_filter has no text), a recitation's partial text too
    ("SAFETY", "content_filter", None), ("RECITATION", "content_filter", None),
    ("BLOCKLIST", "content_filter", None), ("PROHIBITED_CONTENT", "content_filter", None),
    ("OTHER", "content_filter", None),
])
def test_finish_reasons_map_to_openai(reason, expected, content):
    document = {"candidates": [{"content": {"parts": [{"text": "a"}, {"text": "b"}]}, "finishReason": reason}]}

    answer = chat_response("gemini-2.0-flash", document)

    assert answer["choices"][0]["finish_reason"] == expected
    assert answer["choices"][0]["message"]["content"] == content
    assert answer["model"] == "gemini-2.0-flash"


def test_thoughts_are_left_out_and_count_as_completion_tokens():
    document = {
        "candidates": [{"content": {"parts": [{"text": "pondering", "thought": True}, {"text": "42"}]},
                        "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 1, "thoughtsTokenCount": 5,
                          "totalTokenCount": 9},
    }

    answer = chat_response("gemini-2.5-pro", document)

    assert answer["choices"][0]["message"]["content"] == "42"
    assert answer["usage"] == {"prompt_tokens": 3, "completion_tokens": 6, "total_tokens": 9,
                               "completion_tokens_details": {"reasoning_tokens": 5}}


def test_a_blocked_prompt_is_an_empty_content_filtered_answer():
    answer = chat_response("m", {"promptFeedback": {"blockReason": "SAFETY"}})

    assert answer["choices"][0]["message"]["content"] is None
    assert answer["choices"][0]["finish_reason"] == "content_filter"


def test_a_model_name_cannot_escape_its_path(make_endpoint, gemini_connection, fake_gemini):
    invoke(make_endpoint("odd", gemini_connection, model="../../v1beta/models?key=x"),
           {"messages": [{"role": "user", "content": "hi"}]})

    assert fake_gemini.requests[0].path == "/v1beta/models/..%2F..%2Fv1beta%2Fmodels%3Fkey%3Dx:generateContent"


# --- Embeddings -----------------------------------------------------------------------------------------


def test_a_list_input_is_one_batch_embed_contents_request(gemini_embed, fake_gemini):
    answer = invoke(gemini_embed, {"input": ["one", "two"], "dimensions": 3})

    [request] = fake_gemini.requests
    assert request.path == "/v1beta/models/text-embedding-004:batchEmbedContents"
    assert request.headers["x-goog-api-key"] == PLANTED_KEY
    assert request.json() == {"requests": [
        {"model": "models/text-embedding-004", "outputDimensionality": 3, "content": {"parts": [{"text": "one"}]}},
        {"model": "models/text-embedding-004", "outputDimensionality": 3, "content": {"parts": [{"text": "two"}]}},
    ]}
    assert answer["object"] == "list" and answer["model"] == "text-embedding-004"
    assert [(item["index"], item["embedding"]) for item in answer["data"]] == [(0, [0.5, 0.0, -1.0]),
                                                                               (1, [0.5, 1.0, -1.0])]


def test_a_string_input_is_a_batch_of_one(gemini_embed, fake_gemini):
    answer = invoke(gemini_embed, {"input": "hello"})

    assert fake_gemini.requests[0].json() == {
        "requests": [{"model": "models/text-embedding-004", "content": {"parts": [{"text": "hello"}]}}]
    }
    assert len(answer["data"]) == 1


# --- Streaming ------------------------------------------------------------------------------------------


def test_a_stream_is_translated_to_openai_chunks_as_events_arrive(gemini_chat, fake_gemini):
    fake_gemini.stream_gate = threading.Event()  # the fake holds the rest of its stream until released
    stream = iter(invoke(gemini_chat, {"messages": [{"role": "user", "content": "hi"}], "stream": True}))

    received = b""
    while b'"Hel"' not in received:
        received += next(stream)  # translated while Gemini still holds back the rest
    assert b"Gemini" not in received
    fake_gemini.stream_gate.set()
    received += b"".join(stream)

    request = fake_gemini.requests[0]
    assert request.path == "/v1beta/models/gemini-2.0-flash:streamGenerateContent"
    assert request.query == {"alt": ["sse"]}
    assert request.headers["accept"] == "text/event-stream"
    events = data_events(received)
    assert events[-1] == "[DONE]" and received.endswith(b"data: [DONE]\n\n")
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "gemini-2.0-flash" for c in chunks)
    assert len({c["id"] for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert [c["choices"][0]["delta"].get("content") for c in chunks[1:-1]] == ["lo", " from", " Gemini"]
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "finish_reason": "stop"}
    assert "usage" not in chunks[-1]  # not asked for


def test_a_stream_asked_for_its_usage_ends_with_a_usage_chunk(gemini_chat, fake_gemini):
    body = {"messages": [{"role": "user", "content": "hi"}], "stream": True, "stream_options": {"include_usage": True}}
    chunks = [json.loads(event) for event in data_events(b"".join(invoke(gemini_chat, body)))[:-1]]

    assert chunks[-2]["choices"][0]["finish_reason"] == "stop" and "usage" not in chunks[-2]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 7, "completion_tokens": 4, "total_tokens": 11}


def test_a_stream_through_the_route_is_server_sent_events(gateway, gemini_chat, fake_gemini):
    response = post(gateway, "/gateway/v1/chat/completions",
                    {"model": "gemini-chat", "messages": [{"role": "user", "content": "hi"}], "stream": True})

    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    events = data_events(b"".join(response.streaming_content))
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert text == "Hello from Gemini" and events[-1] == "[DONE]"


def test_a_stream_that_stalls_ends_with_an_error_event_then_done(gemini_chat, fake_gemini, settings):
    settings.GATEWAY_TIMEOUT = 0.3
    fake_gemini.stream_gate = threading.Event()  # never released

    events = data_events(b"".join(invoke(gemini_chat, {"messages": [{"role": "user", "content": "x"}],
                                                       "stream": True})))

    assert json.loads(events[-2])["error"]["code"] == "upstream_timeout"
    assert events[-1] == "[DONE]"


def test_an_error_event_in_a_stream_becomes_an_openai_error_event_then_done(gemini_chat, fake_gemini):
    fake_gemini.stream_error = {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}

    events = data_events(b"".join(invoke(gemini_chat, {"messages": [{"role": "user", "content": "x"}],
                                                       "stream": True})))

    assert json.loads(events[0])["choices"][0]["delta"] == {"role": "assistant", "content": "Hel"}
    assert json.loads(events[1])["error"] == {
        "message": "Google Gemini answered HTTP 503: The model is overloaded.", "type": "upstream_error",
        "code": "upstream_error",
    }
    assert events[2:] == ["[DONE]"]


# --- Errors ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status, reason, expected, code", [
    (400, None, 400, "INVALID_ARGUMENT"),
    (400, "API_KEY_INVALID", 401, "upstream_credentials_rejected"),
    (403, None, 401, "upstream_credentials_rejected"),
    (404, None, 404, "NOT_FOUND"),
    (500, None, 502, "upstream_error"),
    (503, None, 502, "upstream_error"),
])
def test_gemini_errors_follow_the_error_table_with_the_message_and_never_the_key(
    gateway, gemini_chat, fake_gemini, caplog, status, reason, expected, code
):
    caplog.set_level(logging.DEBUG)
    fake_gemini.fail(status, "Request failed for key {key}: model says no.", reason=reason, times=3)

    response = post(gateway, "/gateway/v1/chat/completions",
                    {"model": "gemini-chat", "messages": [{"role": "user", "content": "hi"}]})

    assert response.status_code == expected
    error = error_of(response)
    assert error["code"] == code
    assert "model says no." in error["message"]
    assert PLANTED_KEY not in response.content.decode() and PLANTED_KEY not in caplog.text


def test_a_rejected_key_says_which_status_google_answered(gemini_chat, fake_gemini):
    fake_gemini.keys = {"AIzaSomeOtherKey-000000000000000000"}

    with pytest.raises(GatewayError) as raised:
        invoke(gemini_chat, {"messages": [{"role": "user", "content": "hi"}]})

    assert (raised.value.status, raised.value.code, raised.value.upstream_status) == (
        401, "upstream_credentials_rejected", 400)
    assert raised.value.message == ("Google Gemini rejected the connection's credentials (HTTP 400): "
                                    "API key not valid. Please pass a valid API key.")


def test_a_rate_limit_is_a_429_with_retry_after(gateway, gemini_chat, fake_gemini):
    fake_gemini.fail(429, "Resource has been exhausted (e.g. check quota).", headers={"Retry-After": "30"}, times=3)

    response = post(gateway, "/gateway/v1/chat/completions",
                    {"model": "gemini-chat", "messages": [{"role": "user", "content": "hi"}]})

    assert response.status_code == 429 and response["Retry-After"] == "30"
    assert "Resource has been exhausted" in error_of(response)["message"]


def test_the_key_is_never_in_any_url_requested(gateway, gemini_chat, gemini_embed, fake_gemini, admin_user):
    chat = {"model": "gemini-chat", "messages": [{"role": "user", "content": "hi"}]}
    post(gateway, "/gateway/v1/chat/completions", chat)
    post(gateway, "/gateway/v1/chat/completions", {**chat, "stream": True})
    post(gateway, "/gateway/v1/embeddings", {"model": "gemini-embed", "input": "x"})
    run(adapter_for("gemini").test_credentials(gemini_chat.destinations.get().connection.account()))

    assert len(fake_gemini.requests) == 4
    for request in fake_gemini.requests:
        assert PLANTED_KEY not in request.target and "key=" not in request.target
        assert request.headers["x-goog-api-key"] == PLANTED_KEY


def test_a_rotated_key_is_used_by_the_next_call(gemini_chat, fake_gemini, admin_user):
    fake_gemini.keys.add(ROTATED_KEY)
    invoke(gemini_chat, {"messages": [{"role": "user", "content": "hi"}]})
    connection = Connection.objects.get(name="gemini-prod")
    connection.update_secrets({"api_key": ROTATED_KEY})
    connection.full_clean()
    connection_save(connection=connection, actor=admin_user)

    invoke(gemini_chat, {"messages": [{"role": "user", "content": "hi"}]})

    assert [r.headers["x-goog-api-key"] for r in fake_gemini.requests] == [PLANTED_KEY, ROTATED_KEY]


# --- Test action ----------------------------------------------------------------------------------------


def test_the_registry_names_the_gemini_adapter():
    assert isinstance(adapter_for("gemini"), GeminiAdapter)


def test_a_good_key_tests_ok_through_the_api(admin_user, gemini_connection, fake_gemini):
    api = APIClient()
    api.force_authenticate(admin_user)

    response = api.post("/api/v1/connections/gemini-prod/test/")

    assert response.json() == {"ok": True, "status": 200, "message": "Google Gemini accepted the credentials."}
    [request] = fake_gemini.requests
    assert (request.method, request.path, request.query) == ("GET", "/v1beta/models", {"pageSize": ["1"]})
    assert request.headers["x-goog-api-key"] == PLANTED_KEY


def test_a_revoked_key_tests_not_ok_through_the_api_without_showing_it(admin_user, gemini_connection, fake_gemini):
    fake_gemini.keys.clear()
    api = APIClient()
    api.force_authenticate(admin_user)

    response = api.post("/api/v1/connections/gemini-prod/test/")

    body = response.json()
    assert body["ok"] is False and body["status"] == 400
    assert "API key not valid" in body["message"]
    assert PLANTED_KEY not in response.content.decode()


def test_the_test_button_reports_a_good_and_a_revoked_key(client, admin_user, gemini_connection, fake_gemini):
    client.force_login(admin_user)

    response = client.post("/settings/connections/gemini-prod/test/", follow=True)
    assert "Google Gemini accepted the credentials." in response.content.decode()

    fake_gemini.keys.clear()
    response = client.post("/settings/connections/gemini-prod/test/", follow=True)
    text = response.content.decode()
    assert "failed (provider status 400)" in text and "API key not valid" in text
    assert PLANTED_KEY not in text


def test_a_tool_calls_thought_signature_goes_back_with_the_call_next_turn():
    """Gemini 3 refuses a turn that replays a function call without its thought signature."""
    answer = chat_response("gemini-3-pro", {"candidates": [{"content": {"parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2lnbmF0dXJl"}]},
        "finishReason": "STOP"}]})
    call = answer["choices"][0]["message"]["tool_calls"][0]

    request = chat_request({"messages": [
        {"role": "user", "content": "Weather in Oslo?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": "Sunny"},
    ]})

    assert request["contents"][1] == {"role": "model", "parts": [
        {"functionCall": {"name": "weather", "args": {"city": "Oslo"}}, "thoughtSignature": "c2lnbmF0dXJl"}]}
    assert request["contents"][2] == {"role": "user", "parts": [
        {"functionResponse": {"name": "weather", "response": {"content": "Sunny"}}}]}
