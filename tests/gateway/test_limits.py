"""Limits per token and per endpoint: requests per minute and token budgets per day or month, answered 429
with Retry-After and an OpenAI-shaped `rate_limit_exceeded` or `budget_exceeded`; budgets count the tokens the
provider reports, written off the call's path. Counters are rows in the database (two server processes:
test_limits_processes.py)."""

import json
import threading
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from core.limits import window
from gateway.limits import PENDING_TOKENS, Limit, PendingTokens, add_tokens, admit, write_tokens
from gateway.models import LimitCounter
from providers.errors import GatewayError
from tests.asgi_client import AsgiClient
from tests.provider_fixtures import CHAT_BODY
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db


def chat(client, model: str = "chat", **extra):
    return client.post("/gateway/v1/chat/completions", json.dumps({**CHAT_BODY, "model": model, **extra}),
                       content_type="application/json")


def error_of(response) -> dict:
    document = response.json()
    assert set(document) == {"error"} and set(document["error"]) == {"message", "type", "code"}
    return document["error"]


def client_for(user, **limits) -> AsgiClient:
    _, plaintext = ApiToken.issue(user=user, **limits)
    return AsgiClient(HTTP_AUTHORIZATION=f"Bearer {plaintext}")


@pytest.fixture
def svc(caller):
    return caller[0]


def written():
    """The counters, once the tokens calls spent are written as the process's writer writes them (here, now)."""
    assert PENDING_TOKENS.flush()
    return LimitCounter.objects


# --- Requests per minute ----------------------------------------------------------------------------------


def test_a_token_over_its_requests_per_minute_gets_429_with_retry_after(svc, openai_chat, fake_openai):
    gateway = client_for(svc, requests_per_minute=2)

    answers = [chat(gateway) for _ in range(3)]

    assert [a.status_code for a in answers] == [200, 200, 429]
    refused = answers[2]
    assert error_of(refused)["code"] == "rate_limit_exceeded" and error_of(refused)["type"] == "rate_limit_error"
    assert "2 requests per minute" in error_of(refused)["message"]
    assert 1 <= int(refused["Retry-After"]) <= 60
    assert len(fake_openai.requests) == 2  # the refused call never reached the provider


def test_each_token_has_its_own_rate_but_an_endpoints_rate_is_shared(svc, openai_chat, make_endpoint, fake_openai):
    limited_endpoint = make_endpoint("chat-small", openai_chat.destinations.get().connection, requests_per_minute=2)
    first, second = client_for(svc, requests_per_minute=1), client_for(svc, requests_per_minute=1)

    assert chat(first).status_code == 200 and chat(first).status_code == 429
    assert chat(second).status_code == 200  # its own minute

    third, fourth = client_for(svc), client_for(svc)
    assert chat(third, "chat-small").status_code == 200 and chat(fourth, "chat-small").status_code == 200
    refused = chat(third, "chat-small")
    assert refused.status_code == 429
    assert f"endpoint '{limited_endpoint.name}'" in error_of(refused)["message"]


def test_an_unlimited_call_writes_no_counter_and_costs_no_query_more(gateway, openai_chat,
                                                                       django_assert_max_num_queries):
    chat(gateway)  # last used written once

    with django_assert_max_num_queries(3):  # the caller, the endpoint with its connection: nothing for limits
        assert chat(gateway).status_code == 200
    assert not LimitCounter.objects.exists()


def test_a_limited_call_costs_one_statement_for_its_counters(svc, openai_chat, django_assert_max_num_queries):
    gateway = client_for(svc, requests_per_minute=100, token_budget=10_000)
    chat(gateway)

    with django_assert_max_num_queries(3):  # the caller, the endpoint, the counters' upsert (tokens: off the path)
        assert chat(gateway).status_code == 200


# --- Budgets from real token usage ------------------------------------------------------------------------


def test_a_budget_counts_the_tokens_the_provider_reports_and_then_refuses(svc, openai_chat, fake_openai):
    gateway = client_for(svc, token_budget=25, budget_period="day")  # the fake reports 10 tokens a call

    answers = [chat(gateway) for _ in range(4)]

    # 0, 10, 20 used before each: 30 ≥ 25. The process counts its own calls' tokens from the next call on.
    assert [a.status_code for a in answers] == [200, 200, 200, 429]
    error = error_of(answers[3])
    assert error["code"] == "budget_exceeded" and error["type"] == "rate_limit_error"
    assert "25 tokens per day" in error["message"]
    now = datetime.now(UTC)
    assert abs(int(answers[3]["Retry-After"]) - (window("day", now)[1] - now.timestamp())) <= 5
    assert written().get(period="day").tokens == 30
    assert len(fake_openai.requests) == 3


def test_an_endpoints_monthly_budget_is_shared_by_every_token(svc, openai_chat, make_endpoint):
    make_endpoint("chat-budget", openai_chat.destinations.get().connection, token_budget=15)

    assert chat(client_for(svc), "chat-budget").status_code == 200
    assert chat(client_for(svc), "chat-budget").status_code == 200
    refused = chat(client_for(svc), "chat-budget")

    assert refused.status_code == 429 and error_of(refused)["code"] == "budget_exceeded"
    assert "per month" in error_of(refused)["message"]
    assert written().get(period="month").tokens == 20


def test_a_stream_counts_the_usage_the_provider_reports_in_it(svc, openai_chat):
    gateway = client_for(svc, token_budget=1000)

    streamed = chat(gateway, stream=True, stream_options={"include_usage": True})
    body = b"".join(streamed.streaming_content)

    assert streamed.status_code == 200 and b'"total_tokens": 11' in body
    assert written().get(period="month").tokens == 11


def test_embeddings_count_their_reported_tokens(svc, openai_chat, make_endpoint):
    make_endpoint("embed", openai_chat.destinations.get().connection, model="text-embedding-3-small", task="embeddings",
                  token_budget=100)
    gateway = client_for(svc)

    answer = gateway.post("/gateway/v1/embeddings", json.dumps({"model": "embed", "input": ["a", "b", "c"]}),
                          content_type="application/json")

    assert answer.status_code == 200
    assert written().get(subject__startswith="endpoint:").tokens == 3


# --- Windows ----------------------------------------------------------------------------------------------


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_a_new_minute_starts_a_new_count_and_retry_after_is_the_rest_of_the_minute():
    limit = [Limit("token:1", "this token", "minute", 2, "requests")]
    admit(limit, at("2026-03-01 10:00:05"))
    admit(limit, at("2026-03-01 10:00:30"))

    with pytest.raises(GatewayError) as refused:
        admit(limit, at("2026-03-01 10:00:45.5"))
    admit(limit, at("2026-03-01 10:01:00"))  # a new window: counted afresh

    assert refused.value.status == 429 and refused.value.retry_after == "15"
    assert LimitCounter.objects.get().requests == 1


def test_a_process_whose_clock_lags_adds_to_the_current_window_instead_of_resetting_it():
    limit = [Limit("token:1", "this token", "minute", 2, "requests")]
    admit(limit, at("2026-03-01 10:01:10"))
    admit(limit, at("2026-03-01 10:00:59"))  # another machine, a second behind

    with pytest.raises(GatewayError):
        admit(limit, at("2026-03-01 10:01:20"))


# --- What a process holds: rate slots in blocks, budget readings ------------------------------------------


def counter_statements(queries) -> int:
    return len([query for query in queries if LimitCounter._meta.db_table in query["sql"]])


def test_calls_far_from_their_rate_are_admitted_from_slots_taken_in_blocks():
    limit = [Limit("token:1", "this token", "minute", 1000, "requests")]

    with CaptureQueriesContext(connection) as queries:
        for second in range(50):
            admit(limit, at(f"2026-03-01 10:00:{second:02}"))

    assert counter_statements(queries) <= 5  # one slot first, then blocks
    assert 50 <= LimitCounter.objects.get().requests <= 50 + 16


def test_two_processes_taking_slots_in_blocks_admit_exactly_the_limit_between_them():
    from gateway.limits import Held

    limit = [Limit("endpoint:1", "endpoint 'chat'", "minute", 100, "requests")]
    processes, admitted = [Held(), Held()], [0, 0]
    with CaptureQueriesContext(connection) as queries:
        for call in range(1000):
            try:
                admit(limit, at("2026-03-01 10:00:10"), held=processes[call % 2])
                admitted[call % 2] += 1
            except GatewayError as refused:
                assert refused.code == "rate_limit_exceeded"

    assert sum(admitted) == 100 and min(admitted) > 0
    assert counter_statements(queries) < 100  # and once a process knows the minute full, it refuses on its own


def test_a_budget_is_read_again_once_its_reading_is_limits_flush_seconds_old(settings):
    from gateway.limits import Held

    limit = [Limit("token:1", "this token", "day", 100, "tokens")]
    now = at("2026-03-01 10:00:00")
    other_process = Held()
    admit(limit, now, held=other_process)  # its reading: nothing spent

    add_tokens(admit(limit, now), 100)  # this process crosses the budget
    assert PENDING_TOKENS.flush()

    settings.LIMITS_FLUSH_SECONDS = 3600
    admit(limit, now, held=other_process)  # its reading is fresh: it still admits
    settings.LIMITS_FLUSH_SECONDS = 0
    with pytest.raises(GatewayError) as refused:
        admit(limit, now, held=other_process)  # read again: spent
    assert refused.value.code == "budget_exceeded"


@pytest.mark.parametrize("moment, start, end", [
    ("2026-02-14 23:59:59", "2026-02-01", "2026-03-01"),
    ("2028-02-29 00:00:00", "2028-02-01", "2028-03-01"),
    ("2026-12-31 12:00:00", "2026-12-01", "2027-01-01"),
])
def test_monthly_windows_are_calendar_months_in_utc(moment, start, end):
    assert window("month", at(moment)) == (int(at(start).timestamp()), int(at(end).timestamp()))


def test_a_rate_and_a_budget_both_spent_answer_budget_exceeded_with_the_longer_wait():
    limits = [Limit("token:1", "this token", "minute", 1, "requests"),
              Limit("token:1", "this token", "day", 5, "tokens")]
    now = at("2026-03-01 10:00:00")
    admission = admit(limits, now)

    add_tokens(admission, 7)
    with pytest.raises(GatewayError) as refused:
        admit(limits, now)

    assert refused.value.code == "budget_exceeded"
    assert refused.value.retry_after == str(14 * 3600)


def test_a_call_under_both_a_token_and_an_endpoint_budget_spends_both(svc, openai_chat, make_endpoint):
    endpoint = make_endpoint("chat-budget", openai_chat.destinations.get().connection, token_budget=100, budget_period="day")

    assert chat(client_for(svc, token_budget=100), "chat-budget").status_code == 200

    assert sorted(written().values_list("subject", "tokens")) == [
        (f"endpoint:{endpoint.pk}", 10), (f"token:{ApiToken.objects.latest('id').pk}", 10)]


# --- Tokens written off the call's path ---------------------------------------------------------------------


def test_a_calls_tokens_are_counted_in_memory_and_written_after_its_answer(svc, openai_chat):
    gateway = client_for(svc, token_budget=1000)

    assert chat(gateway).status_code == 200

    assert LimitCounter.objects.values_list("tokens", flat=True).get() == 0  # the call waited for no write
    assert written().values_list("tokens", flat=True).get() == 10


def test_the_tokens_of_many_calls_are_summed_and_written_in_one_statement():
    limits = [Limit("token:1", "this token", "day", 10_000, "tokens"),
              Limit("endpoint:1", "endpoint 'chat'", "month", 10_000, "tokens")]
    admissions = [admit(limits, at("2026-03-01 10:00:00")) for _ in range(20)]  # all in flight at once
    for admission in admissions:
        add_tokens(admission, 5)

    with CaptureQueriesContext(connection) as queries:
        assert PENDING_TOKENS.flush()

    assert len([query for query in queries if LimitCounter._meta.db_table in query["sql"]]) == 1
    assert sorted(LimitCounter.objects.values_list("subject", "tokens")) == [("endpoint:1", 100), ("token:1", 100)]
    assert not PENDING_TOKENS.sums


def test_tokens_of_a_window_that_has_ended_are_not_added_to_the_next():
    limit = [Limit("token:1", "this token", "day", 10_000, "tokens")]
    yesterday = admit(limit, at("2026-03-01 23:59:59"))
    admit(limit, at("2026-03-02 00:00:01"))

    add_tokens(yesterday, 40)  # its answer came after midnight
    assert written().values_list("started", "tokens").get() == (int(at("2026-03-02 00:00:00").timestamp()), 0)


def test_stopping_writes_the_tokens_waiting(svc, openai_chat):
    gateway = client_for(svc, token_budget=1000)
    chat(gateway)
    chat(gateway)

    PENDING_TOKENS.stop()

    assert LimitCounter.objects.get().tokens == 20 and not PENDING_TOKENS.sums


@pytest.mark.django_db(transaction=True)
def test_tokens_the_database_refuses_wait_for_the_next_write_and_are_written_once(svc, openai_chat, caplog):
    gateway = client_for(svc, token_budget=1000)
    assert chat(gateway).status_code == 200
    table = LimitCounter._meta.db_table
    with connection.schema_editor() as editor:
        editor.alter_db_table(LimitCounter, table, f"{table}_away")  # every write of a counter fails
    try:
        assert not PENDING_TOKENS.flush()
        PENDING_TOKENS.stop()  # at shutdown too: logged, never raised (the usage recorder is written next)
    finally:
        with connection.schema_editor() as editor:
            editor.alter_db_table(LimitCounter, f"{table}_away", table)

    assert "Budgets: 10 tokens of 1 budget windows wait to be written (" in caplog.text
    assert chat(gateway).status_code == 200
    assert written().values_list("tokens", flat=True).get() == 20  # the first call's 10 written once


@pytest.mark.django_db(transaction=True)
def test_the_writer_thread_writes_the_tokens_an_interval_after_the_first_waits(settings):
    settings.LIMITS_WRITER_THREAD = True
    settings.LIMITS_FLUSH_SECONDS = 0.05
    wrote = threading.Event()
    pending = PendingTokens(write=lambda sums: (write_tokens(sums), wrote.set()))
    admission = admit([Limit("token:1", "this token", "day", 10_000, "tokens")], datetime.now(UTC))
    try:
        pending.add(admission.windows, 7)
        pending.add(admission.windows, 8)
        assert wrote.wait(10)
        assert LimitCounter.objects.values_list("tokens", flat=True).get() == 15
    finally:
        pending.stop()
