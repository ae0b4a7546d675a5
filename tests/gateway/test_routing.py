"""Endpoints with several destinations, over HTTP against fake providers: the weighted split, fallbacks on the
failures an endpoint names (and never on a refused request), streams, the deadline, cooldowns, headers."""

import json
from collections import Counter

import httpx
import openai
import pytest
from django.contrib.auth.models import Permission

from connections.services import connection_rotate_key
from endpoints.models import Destination, Endpoint
from gateway import routing
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI, chunk_document, sse
from tests.fakes.server import closed_port
from tests.provider_fixtures import CHAT_BODY
from tokens.models import ApiToken

PRIMARY_KEY = PLANTED_KEY
BACKUP_KEY = "sk-backup-SECRET-0123456789-abcdefWXYZ"
ROTATED_KEY = "sk-rotated-SECRET-9876543210-zyxwvuQRST"
STREAM_BODY = {**CHAT_BODY, "stream": True}


class BreakingOpenAI(FakeOpenAI):
    """Starts a stream, then drops the connection after its first event."""

    def stream_events(self, model, usage=False):
        yield sse(chunk_document(model, {"role": "assistant", "content": "Hel"}))
        raise ConnectionResetError("the provider went away")


@pytest.fixture
def primary_fake():
    with FakeOpenAI(keys={PRIMARY_KEY}) as fake:
        yield fake


@pytest.fixture
def backup_fake():
    with FakeOpenAI(keys={BACKUP_KEY}) as fake:
        yield fake


@pytest.fixture
def connections(make_connection, primary_fake, backup_fake):
    return (
        make_connection("openai-prod", config={"base_url": primary_fake.base_url}),
        make_connection("openai-backup", secrets={"api_key": BACKUP_KEY}, config={"base_url": backup_fake.base_url}),
    )


@pytest.fixture
def chat(connections, make_endpoint) -> Endpoint:
    primary, backup = connections
    return make_endpoint("chat", primary, model="gpt-4o", fallbacks=((backup, "gpt-4o-mini"),))


def call(gateway, body=CHAT_BODY):
    return gateway.post("/gateway/v1/chat/completions", json.dumps({**body, "model": "chat"}))


def set_fallback_on(endpoint: Endpoint, *kinds: str) -> None:
    Endpoint.objects.filter(pk=endpoint.pk).update(fallback_on=list(kinds))


def test_an_answer_names_the_destination_and_the_attempts(gateway, chat, primary_fake, backup_fake):
    response = call(gateway)

    assert response.status_code == 200
    assert (response["x-llmc-destination"], response["x-llmc-attempts"]) == ("openai-prod/gpt-4o", "1")
    assert primary_fake.presented_keys() == [PRIMARY_KEY] and backup_fake.requests == []


@pytest.mark.parametrize(("script", "kind"), [
    (lambda fake: fake.fail(429, "slow down", headers={"Retry-After": "20"}), "rate_limited"),
    (lambda fake: fake.fail(500, "boom"), "server_error"),
    (lambda fake: fake.fail(503, "overloaded"), "server_error"),
])
def test_a_retryable_answer_falls_back_to_the_next_destination_and_cools_the_first(
    gateway, chat, primary_fake, backup_fake, script, kind
):
    script(primary_fake)

    response = call(gateway)

    assert response.status_code == 200, response.content
    assert (response["x-llmc-destination"], response["x-llmc-attempts"]) == ("openai-backup/gpt-4o-mini", "2")
    assert backup_fake.presented_keys() == [BACKUP_KEY]
    assert backup_fake.requests[0].json()["model"] == "gpt-4o-mini"
    primary = Destination.objects.get(role="primary")
    assert primary.cooling_until is not None
    # While it cools, the next call goes to the fallback first, in this process or any other.
    again = call(gateway)
    assert (again["x-llmc-destination"], again["x-llmc-attempts"]) == ("openai-backup/gpt-4o-mini", "1")
    assert len(primary_fake.requests) == 1


def test_an_unreachable_provider_falls_back(gateway, make_connection, make_endpoint, backup_fake, connections):
    gone = make_connection("gone", config={"base_url": f"http://127.0.0.1:{closed_port()}/v1"})
    make_endpoint("chat", gone, fallbacks=((connections[1], "gpt-4o-mini"),))

    response = call(gateway)

    assert response.status_code == 200
    assert (response["x-llmc-destination"], response["x-llmc-attempts"]) == ("openai-backup/gpt-4o-mini", "2")


def test_a_timeout_falls_back(gateway, chat, primary_fake, backup_fake, settings):
    settings.GATEWAY_TIMEOUT = 0.3
    primary_fake.hang(2)

    response = call(gateway)

    assert response.status_code == 200
    assert response["x-llmc-attempts"] == "2" and backup_fake.presented_keys() == [BACKUP_KEY]


def test_refused_credentials_fall_back_only_when_the_endpoint_says_so(gateway, chat, primary_fake, backup_fake):
    primary_fake.keys.clear()

    refused = call(gateway)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "upstream_credentials_rejected"
    assert refused["x-llmc-attempts"] == "1" and backup_fake.requests == []

    set_fallback_on(chat, "credentials_refused")
    response = call(gateway)
    assert response.status_code == 200 and response["x-llmc-destination"] == "openai-backup/gpt-4o-mini"
    # A refused key is not cooled: once it is fixed, the very next call uses it again.
    assert Destination.objects.get(role="primary").cooling_until is None


def test_a_refused_request_never_falls_back(gateway, chat, primary_fake, backup_fake):
    set_fallback_on(chat, "connection_error", "timeout", "rate_limited", "server_error", "credentials_refused")
    primary_fake.fail(400, "Invalid 'messages'.")

    response = call(gateway)

    assert response.status_code == 400 and response["x-llmc-attempts"] == "1"
    assert backup_fake.requests == []


def test_a_failure_the_endpoint_does_not_fall_back_on_is_answered_as_is(gateway, chat, primary_fake, backup_fake):
    set_fallback_on(chat, "server_error")
    primary_fake.fail(429, "slow down")

    response = call(gateway)

    assert response.status_code == 429 and response["Retry-After"]
    assert backup_fake.requests == []


def test_when_every_destination_fails_the_error_names_each_and_why_without_a_secret(
    gateway, chat, primary_fake, backup_fake
):
    primary_fake.fail(429, "Rate limit for key {key}")
    backup_fake.fail(502, "Bad gateway, key {key}")

    response = call(gateway)

    assert response.status_code == 502 and response["x-llmc-attempts"] == "2"
    message = response.json()["error"]["message"]
    assert message.startswith("Tried 2 destinations, none answered: openai-prod/gpt-4o: HTTP 429 upstream_rate_limited")
    assert "openai-backup/gpt-4o-mini: HTTP 502 upstream_error" in message
    assert PRIMARY_KEY not in response.text and BACKUP_KEY not in response.text


def test_one_overall_deadline_bounds_every_attempt(gateway, chat, primary_fake, backup_fake):
    Endpoint.objects.filter(pk=chat.pk).update(deadline_seconds=1)
    primary_fake.hang(5)

    response = call(gateway)

    assert response.status_code == 504
    assert "within its deadline of 1 seconds" in response.json()["error"]["message"]
    assert backup_fake.requests == []


def test_a_stream_falls_back_before_its_first_byte(gateway, chat, primary_fake, backup_fake):
    primary_fake.fail(503, "overloaded")

    response = call(gateway, STREAM_BODY)

    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    assert (response["x-llmc-destination"], response["x-llmc-attempts"]) == ("openai-backup/gpt-4o-mini", "2")
    assert "Hello from the fake" in "".join(
        json.loads(line[6:])["choices"][0]["delta"].get("content", "")
        for line in response.text.splitlines() if line.startswith("data: {")
    )


def test_a_stream_that_breaks_after_its_first_byte_ends_with_an_error_event_not_a_fallback(
    gateway, make_connection, make_endpoint, connections, backup_fake
):
    with BreakingOpenAI(keys={PRIMARY_KEY}) as breaking:
        flaky = make_connection("flaky", config={"base_url": breaking.base_url})
        make_endpoint("chat", flaky, fallbacks=((connections[1], "gpt-4o-mini"),))

        response = call(gateway, STREAM_BODY)

    assert response.status_code == 200 and response["x-llmc-destination"] == "flaky/gpt-4o-mini"
    events = [line[6:] for line in response.text.splitlines() if line.startswith("data: ")]
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "Hel"
    assert "error" in json.loads(events[-2]) and events[-1] == "[DONE]"
    assert backup_fake.requests == []


def test_a_rotated_key_on_a_fallbacks_connection_is_used_on_the_next_call(gateway, chat, connections, primary_fake,
                                                                           backup_fake):
    primary_fake.fail(500, "boom", times=2)
    assert call(gateway)["x-llmc-destination"] == "openai-backup/gpt-4o-mini"

    connection_rotate_key(connection=connections[1], field="api_key", value=ROTATED_KEY, actor=None)
    backup_fake.keys = {ROTATED_KEY}
    response = call(gateway)

    assert response.status_code == 200
    assert backup_fake.presented_keys() == [BACKUP_KEY, ROTATED_KEY]


@pytest.mark.django_db(transaction=True)
def test_the_split_follows_the_weights_over_2000_calls(asgi_live_server, caller, make_connection):
    keys = {"east": "sk-east-SECRET-0000000000-aaaaEAST", "west": "sk-west-SECRET-1111111111-bbbbWEST",
            "north": "sk-north-SECRET-2222222222-ccccNORTH"}
    weights = {"east": 50, "west": 30, "north": 20}
    with FakeOpenAI(keys=set(keys.values())) as fake, httpx.Client(
        base_url=asgi_live_server.url, headers={"Authorization": f"Bearer {caller[1]}"}, timeout=10
    ) as client:
        made = {name: make_connection(name, secrets={"api_key": key}, config={"base_url": fake.base_url})
                for name, key in keys.items()}
        endpoint = Endpoint(name="chat", task="chat")
        endpoint.save()
        for position, (name, weight) in enumerate(weights.items()):
            Destination.objects.create(endpoint=endpoint, connection=made[name], model="gpt-4o-mini", weight=weight,
                                       position=position)
        routing.CHOOSER.seed(19)

        answered = Counter(
            client.post("/gateway/v1/chat/completions", json={**CHAT_BODY, "model": "chat"})
            .headers["x-llmc-destination"].split("/")[0]
            for _ in range(2000)
        )
        presented = Counter(fake.presented_keys())
    assert sum(answered.values()) == 2000
    for name, weight in weights.items():
        assert abs(answered[name] / 2000 - weight / 100) < 0.03, answered
        assert presented[keys[name]] == answered[name]


@pytest.mark.django_db(transaction=True)
def test_the_openai_sdk_reads_the_route_from_the_headers(asgi_live_server, django_user_model, connections,
                                                        make_endpoint, primary_fake):
    primary, backup = connections
    make_endpoint("chat", primary, model="gpt-4o", fallbacks=((backup, "gpt-4o-mini"),))
    user = django_user_model.objects.create_user("sdk-user")
    user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    _, token = ApiToken.issue(user=user)
    primary_fake.fail(500, "boom")
    client = openai.OpenAI(base_url=f"{asgi_live_server.url}/gateway/v1", api_key=token, max_retries=0, timeout=10)
    try:
        raw = client.chat.completions.with_raw_response.create(model="chat", messages=[{"role": "user", "content": "Hi"}])
    finally:
        client.close()

    assert raw.headers["x-llmc-destination"] == "openai-backup/gpt-4o-mini" and raw.headers["x-llmc-attempts"] == "2"
    assert raw.parse().choices[0].message.content


def test_a_failing_primary_of_a_split_cools_and_the_next_calls_go_to_the_other(gateway, connections, primary_fake,
                                                                               backup_fake):
    primary, backup = connections
    endpoint = Endpoint.objects.create(name="chat", task="chat")
    Destination.objects.create(endpoint=endpoint, connection=primary, model="gpt-4o", weight=50, position=0)
    Destination.objects.create(endpoint=endpoint, connection=backup, model="gpt-4o", weight=50, position=1)
    primary_fake.fail(503, "overloaded", times=50)
    routing.CHOOSER.seed(7)  # a fixed sequence of choices, which picks the failing primary among the first calls
    answers = [call(gateway) for _ in range(12)]

    failed = [a for a in answers if a.status_code != 200]
    assert len(failed) == 1 and failed[0]["x-llmc-destination"] == "openai-prod/gpt-4o"  # no fallback: answered as is
    after = answers[answers.index(failed[0]) + 1:]
    assert all(a["x-llmc-destination"] == "openai-backup/gpt-4o" for a in after)
    assert len(primary_fake.requests) == 1
