"""Every gateway call leaves a record: who called which destination, how it ended, how long, how many tokens."""

import json
from decimal import Decimal

from django.forms.models import model_to_dict

from tests.conftest import PLANTED_KEY
from tests.fakes.openai import STREAM_USAGE
from tests.fakes.openai import chunk_document, sse
from tests.fakes.server import FakeServer, Reply, closed_port
from tests.provider_fixtures import CHAT_BODY
from usage.models import LATENCY_FIELDS, Price, UsageDay, UsageHourOverall, UsageRecord


def post(client, path: str, body: object):
    return client.post(path, json.dumps(body), content_type="application/json")


def stream_events(response) -> list[str]:
    body = b"".join(response.streaming_content).decode()
    return [line[6:] for line in body.splitlines() if line.startswith("data: ")]


def test_a_call_is_recorded_with_its_destination_caller_status_and_tokens(gateway, openai_chat, caller, recorded):
    assert post(gateway, "/gateway/v1/chat/completions", CHAT_BODY).status_code == 200
    [record] = recorded()
    user, _ = caller
    assert (record.endpoint_id, record.connection_id, record.user_id) == (
        openai_chat.pk, openai_chat.destinations.get().connection_id, user.pk)
    assert record.token_id == user.api_tokens.get().pk
    assert (record.provider, record.model, record.status, record.error) == ("openai", "gpt-4o-mini", 200, "")
    assert (record.prompt_tokens, record.completion_tokens, record.total_tokens) == (5, 5, 10)
    assert record.stream is False and record.ttfb_ms is None and record.latency_ms >= 0
    assert record.cost_micros is None  # no price set


def test_attempts_count_the_provider_requests_retries_included(gateway, openai_chat, fake_openai, make_connection,
                                                               make_endpoint, recorded):
    fake_openai.fail(429, "Busy.", headers={"Retry-After": "0"})  # retried at once, then answered
    assert post(gateway, "/gateway/v1/chat/completions", CHAT_BODY).status_code == 200
    down = make_endpoint("down", make_connection("down", config={"base_url": f"http://127.0.0.1:{closed_port()}/v1"}))
    assert post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "model": down.name}).status_code == 502
    post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "model": "no-such-endpoint"})
    retried, unreachable, refused = recorded()
    assert (retried.attempts, retried.status) == (2, 200)
    assert unreachable.attempts == 3  # the first try and two more to connect
    assert refused.attempts == 0


def test_a_call_that_falls_back_is_recorded_with_the_destination_that_answered(
    gateway, openai_chat, make_connection, make_endpoint, recorded
):
    down = make_connection("down", config={"base_url": f"http://127.0.0.1:{closed_port()}/v1"})
    backup = openai_chat.destinations.get().connection
    make_endpoint("routed", down, model="gpt-4o", fallbacks=((backup, "gpt-4o-mini"),))

    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "model": "routed"})

    assert response.status_code == 200 and response["x-llmc-destination"] == f"{backup.name}/gpt-4o-mini"
    [record] = recorded()
    assert (record.connection_id, record.provider, record.model, record.status) == (
        backup.pk, "openai", "gpt-4o-mini", 200)
    assert record.attempts == 4  # three tries to connect to the unreachable one, then the answer


def test_a_record_holds_no_prompt_answer_or_secret(gateway, openai_chat, caller, recorded):
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    text = json.dumps(model_to_dict(recorded()[0]), default=str)
    for absent in ("Say hello", "Hello from the fake", PLANTED_KEY, caller[1]):
        assert absent not in text


def test_a_provider_error_is_recorded_with_its_status_and_code(gateway, openai_chat, fake_openai, recorded, hours):
    fake_openai.fail(429, "Slow down.", code="rate_limit_exceeded")
    assert post(gateway, "/gateway/v1/chat/completions", CHAT_BODY).status_code == 429
    [record] = recorded()
    assert (record.status, record.error, record.prompt_tokens) == (429, "upstream_rate_limited", None)
    [hour] = hours()
    assert (hour.calls, hour.errors) == (1, 1)


def test_a_timeout_is_recorded_as_a_504_that_took_the_time(gateway, openai_chat, fake_openai, settings, recorded):
    settings.GATEWAY_TIMEOUT = 0.3
    fake_openai.hang(2)
    assert post(gateway, "/gateway/v1/chat/completions", CHAT_BODY).status_code == 504
    [record] = recorded()
    assert (record.status, record.error) == (504, "upstream_timeout")
    assert record.latency_ms >= 300


def test_a_stream_records_its_first_byte_and_the_usage_the_gateway_asked_for(gateway, openai_chat, fake_openai,
                                                                              recorded):
    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "stream": True})
    events = stream_events(response)
    # The client did not ask for usage: it gets the stream it asked for, without the usage-only chunk.
    assert events[-1] == "[DONE]" and all(json.loads(event)["choices"] for event in events[:-1])
    assert fake_openai.requests[0].json()["stream_options"] == {"include_usage": True}
    [record] = recorded()
    assert record.stream is True and record.status == 200
    assert record.ttfb_ms is not None and record.ttfb_ms <= record.latency_ms
    assert (record.prompt_tokens, record.completion_tokens) == (
        STREAM_USAGE["prompt_tokens"], STREAM_USAGE["completion_tokens"])


def test_a_stream_that_breaks_off_is_recorded_as_failed_with_its_error(gateway, make_connection, make_endpoint,
                                                                       recorded, hours):
    def handle(request):
        chunks = [sse(chunk_document("m", {"role": "assistant", "content": "Hel"})), b"<html>oops</html>\n"]
        return Reply(200, {"Content-Type": "text/event-stream"}, chunks=iter(chunks))

    with FakeServer(handle) as provider:
        connection = make_connection("flaky", provider="openai_compatible", auth_method="none", secrets={},
                                     config={"base_url": f"{provider.url}/v1"})
        make_endpoint("flaky-chat", connection)
        events = stream_events(post(gateway, "/gateway/v1/chat/completions",
                                    {**CHAT_BODY, "model": "flaky-chat", "stream": True}))
    assert "error" in json.loads(events[-2])
    [record] = recorded()
    assert (record.status, record.stream, record.error) == (200, True, json.loads(events[-2])["error"]["code"])
    assert hours()[0].errors == 1


def test_a_stream_whose_client_asked_for_usage_gets_it(gateway, openai_chat, recorded):
    body = {**CHAT_BODY, "stream": True, "stream_options": {"include_usage": True}}
    events = stream_events(post(gateway, "/gateway/v1/chat/completions", body))
    assert json.loads(events[-2])["usage"] == STREAM_USAGE
    assert recorded()[0].prompt_tokens == STREAM_USAGE["prompt_tokens"]


def test_a_translated_stream_records_the_usage_its_provider_reported(gateway, gemini_chat, recorded):
    body = {**CHAT_BODY, "model": gemini_chat.name, "stream": True}
    assert stream_events(post(gateway, "/gateway/v1/chat/completions", body))[-1] == "[DONE]"
    [record] = recorded()
    assert record.provider == "gemini" and record.stream
    assert record.prompt_tokens is not None and record.completion_tokens is not None


def test_embeddings_record_their_input_tokens(gateway, openai_chat, make_endpoint, recorded):
    make_endpoint("embed", openai_chat.destinations.get().connection, model="text-embedding-3-small", task="embeddings")
    assert post(gateway, "/gateway/v1/embeddings", {"model": "embed", "input": ["a", "b"]}).status_code == 200
    [record] = recorded()
    assert (record.model, record.prompt_tokens, record.completion_tokens) == ("text-embedding-3-small", 2, 0)


def test_a_refused_token_and_an_unknown_endpoint_are_recorded_without_ids(client, gateway, openai_chat, recorded):
    post(client, "/gateway/v1/chat/completions", CHAT_BODY)
    post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "model": "no-such-endpoint"})
    refused, unknown = recorded()
    assert (refused.status, refused.error, refused.token_id, refused.endpoint_id) == (401, "invalid_api_key", None, None)
    assert (unknown.status, unknown.error, unknown.endpoint_id) == (404, "endpoint_not_found", None)
    assert unknown.token_id is not None


def test_listing_models_is_not_a_call(gateway, openai_chat, recorded):
    assert gateway.get("/gateway/v1/models").status_code == 200
    assert recorded() == []


def test_a_price_gives_each_call_its_cost_and_the_hours_add_up(gateway, openai_chat, recorded, hours):
    Price.objects.create(connection=openai_chat.destinations.get().connection, model="gpt-4o-mini",
                         input_per_million=Decimal("0.15"), output_per_million=Decimal("0.60"))
    for _ in range(3):
        post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    records = recorded()
    assert [r.cost_micros for r in records] == [4, 4, 4]  # 5 × 0.15 + 5 × 0.60 = 3.75 millionths, rounded
    [hour] = hours()
    assert (hour.calls, hour.errors, hour.prompt_tokens, hour.completion_tokens, hour.cost_micros) == (3, 0, 15, 15, 12)
    assert sum(getattr(hour, name) for name in LATENCY_FIELDS) == 3


def test_records_of_separate_flushes_add_to_the_same_hour(gateway, openai_chat, recorded, hours):
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    recorded()
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    [hour] = hours()
    assert hour.calls == 2 and UsageRecord.objects.count() == 2
    [day] = UsageDay.objects.all()  # the day's totals, written alongside
    assert (day.calls, day.prompt_tokens, day.day) == (2, 10, hour.hour.replace(hour=0))
    [overall] = UsageHourOverall.objects.all()  # and the hour's over every destination
    assert (overall.calls, overall.endpoint_id, overall.hour) == (2, 0, hour.hour)
