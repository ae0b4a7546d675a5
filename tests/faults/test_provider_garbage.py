"""A provider that answers garbage, or a stream that breaks or stalls mid-way: the documented gateway error with a clean
message (no traceback, no key), and a stalled stream ends within the configured timeout."""

import json
import time
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import Permission

from tests.conftest import PLANTED_KEY
from tests.fakes.server import FakeServer, RecordedRequest, Reply
from tests.asgi_client import AsgiClient
from tokens.models import ApiToken

CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
FIRST_CHUNK = b'data: {"id":"c1","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
HTML_ERROR_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>"


class Garbage:
    """A provider answering each request with the reply a test sets."""

    def __init__(self):
        self.reply: Reply = Reply.json({})
        self.server = FakeServer(self.handle)

    def handle(self, request: RecordedRequest) -> Reply:
        return self.reply


@pytest.fixture
def provider():
    garbage = Garbage()
    yield garbage
    garbage.server.stop()


@pytest.fixture
def gateway(django_user_model, make_connection, make_endpoint, provider):
    connection = make_connection("flaky", config={"base_url": f"{provider.server.url}/v1"})
    make_endpoint("chat", connection)
    user = django_user_model.objects.create_user("svc")
    user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    return AsgiClient(HTTP_AUTHORIZATION=f"Bearer {ApiToken.issue(user=user)[1]}")


def post(client, body: dict):
    return client.post("/gateway/v1/chat/completions", json.dumps(body), content_type="application/json")


def assert_clean_error(response, status: int, code: str) -> str:
    assert response.status_code == status, response.content
    document = response.json()
    assert set(document) == {"error"} and set(document["error"]) == {"message", "type", "code"}
    assert document["error"]["code"] == code
    assert "Traceback" not in response.content.decode() and PLANTED_KEY not in response.content.decode()
    return document["error"]["message"]


@pytest.mark.parametrize("status, content_type, body", [
    (200, "text/plain", "this is not json"),
    (200, "application/json", '{"id": "chatcmpl-1", "object": "chat.completion", "choi'),  # truncated
    (200, "text/html", "<html><body>Please sign in to the proxy</body></html>"),
    (200, "application/json", ""),
    (200, "application/json", "\xff\xfe garbage bytes"),
], ids=["text", "truncated-json", "html-200", "empty", "bytes"])
def test_an_answer_that_is_not_json_is_a_502(gateway, provider, status, content_type, body):
    provider.reply = Reply(status, {"Content-Type": content_type}, body.encode("latin-1"))

    message = assert_clean_error(post(gateway, CHAT), 502, "upstream_invalid_response")

    assert "not JSON" in message


@pytest.mark.parametrize("document", [[1, 2, 3], "a string", None, 42])
def test_json_that_is_not_an_object_is_a_502(gateway, provider, document):
    provider.reply = Reply(200, {"Content-Type": "application/json"}, json.dumps(document).encode())

    assert_clean_error(post(gateway, CHAT), 502, "upstream_invalid_response")


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_html_error_page_is_a_502_with_a_short_message(gateway, provider, status):
    provider.reply = Reply(status, {"Content-Type": "text/html"}, HTML_ERROR_PAGE.encode())

    message = assert_clean_error(post(gateway, CHAT), 502, "upstream_error")

    assert len(message) < 600


def broken_stream() -> Iterator[bytes]:
    yield FIRST_CHUNK
    raise ConnectionResetError("the provider went away")  # the socket closes without the final chunk


def stalled_stream(seconds: float) -> Iterator[bytes]:
    yield FIRST_CHUNK
    time.sleep(seconds)
    yield b"data: [DONE]\n\n"


def stream_events(response) -> list[str]:
    text = b"".join(response.streaming_content).decode()
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block]


def test_a_stream_that_breaks_off_ends_with_a_502_error_event_then_done(gateway, provider):
    provider.reply = Reply(200, {"Content-Type": "text/event-stream"}, chunks=broken_stream())

    response = post(gateway, {**CHAT, "stream": True})

    assert response.status_code == 200  # the status went out with the first event
    events = stream_events(response)
    assert events[0] == FIRST_CHUNK.decode().removeprefix("data: ").strip()
    assert json.loads(events[1])["error"]["code"] == "upstream_error"
    assert events[2:] == ["[DONE]"]


def test_a_stream_that_stalls_ends_with_a_timeout_event_within_the_timeout(gateway, provider, settings):
    settings.GATEWAY_TIMEOUT = 0.5
    provider.reply = Reply(200, {"Content-Type": "text/event-stream"}, chunks=stalled_stream(3))

    started = time.monotonic()
    response = post(gateway, {**CHAT, "stream": True})
    events = stream_events(response)
    elapsed = time.monotonic() - started

    assert json.loads(events[1])["error"]["code"] == "upstream_timeout"
    assert events[2:] == ["[DONE]"]
    assert 0.5 <= elapsed < 1.5
