"""Checks every provider adapter's tests share: calling an endpoint, reading streams, the error table's rows,
the Test action through the API and the page, and the secret's absence from every exit."""

import json
import logging
import threading
from collections.abc import Iterator

import pytest
from rest_framework.test import APIClient

from endpoints.models import Endpoint
from providers.adapters import adapter_for
from providers.errors import GatewayError
from tests.conftest import PLANTED_KEY
from tests.provider_calls import run

LOGGERS = ("httpx", "httpcore", "gateway", "providers", "django")


def invoke(endpoint: Endpoint, body: dict):
    """Call the endpoint's adapter as the routes do (the endpoint and connection fresh from the database)."""
    endpoint = Endpoint.objects.prefetch_related("destinations__connection").get(pk=endpoint.pk)
    return run(adapter_for(endpoint.destinations.get().connection.provider).invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, body))


def invoke_error(endpoint: Endpoint, body: dict) -> GatewayError:
    with pytest.raises(GatewayError) as raised:
        invoke(endpoint, body)
    return raised.value


def events_of(stream: bytes) -> list:
    """The `data:` payloads of an SSE byte stream: dicts, and the final "[DONE]"."""
    payloads = [line[6:] for line in stream.decode().splitlines() if line.startswith("data: ")]
    return [payload if payload == "[DONE]" else json.loads(payload) for payload in payloads]


def contents_of(stream: bytes) -> str:
    """The concatenated delta contents of an OpenAI chat stream."""
    return "".join(
        choice["delta"].get("content") or ""
        for event in events_of(stream) if isinstance(event, dict)
        for choice in event.get("choices", [])
    )


def read_until(stream: Iterator[bytes], marker: bytes) -> bytes:
    """Read a stream until `marker` has arrived (the provider holds back the rest meanwhile)."""
    received = b""
    while marker not in received:
        received += next(stream)
    return received


def assert_streams_incrementally(endpoint: Endpoint, fake, body: dict, first: str, rest: str) -> bytes:
    """The first translated chunk reaches the caller while the provider still holds back the rest."""
    fake.stream_gate = threading.Event()
    stream = iter(invoke(endpoint, {**body, "stream": True}))
    received = read_until(stream, json.dumps(first).encode())
    assert rest.encode() not in received
    fake.stream_gate.set()
    received += b"".join(stream)
    assert received.endswith(b"data: [DONE]\n\n") and received.count(b"[DONE]") == 1
    return received


def assert_error_table(endpoint: Endpoint, fake, body: dict, label: str) -> None:
    """The error table: upstream 401 → 401 credentials rejected; 429 → 429 with Retry-After; 5xx → 502."""
    fake.fail(401, "bad credentials")
    error = invoke_error(endpoint, body)
    assert (error.status, error.code, error.upstream_status) == (401, "upstream_credentials_rejected", 401)
    assert error.message == f"{label} rejected the connection's credentials (HTTP 401): bad credentials"

    fake.fail(403, "no access to this model")
    assert invoke_error(endpoint, body).status == 401

    fake.fail(429, "slow down", headers={"Retry-After": "30"})
    error = invoke_error(endpoint, body)
    assert (error.status, error.code, error.retry_after) == (429, "upstream_rate_limited", "30")
    assert error.message == f"{label} is rate limiting this connection: slow down"

    fake.fail(500, "internal trouble")
    error = invoke_error(endpoint, body)
    assert (error.status, error.code) == (502, "upstream_error")
    assert error.message == f"{label} answered HTTP 500: internal trouble"

    fake.fail(400, "model: unknown model 'nope'")
    error = invoke_error(endpoint, body)
    assert (error.status, error.message) == (400, "model: unknown model 'nope'")


def assert_secret_never_leaves(endpoint: Endpoint, fake, body: dict, caplog, secret: str = PLANTED_KEY) -> None:
    """A provider echoing the key in errors (also in a stream) leaks it to no answer and no log line."""
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    exits = []
    for status in (400, 401, 429, 500):
        fake.fail(status, "The key {key} is not valid here.", headers={"Retry-After": "30"})
        error = invoke_error(endpoint, body)
        assert "[redacted]" in error.message
        exits += [error.message, str(error), repr(error), json.dumps(error.body())]
    answer = invoke(endpoint, body)
    exits.append(json.dumps(answer) if isinstance(answer, dict) else b"".join(answer).decode())
    for text in (*exits, caplog.text):
        assert secret not in text
    assert caplog.records


def assert_test_action(connection_name: str, fake, label: str, admin_user, client, revoke) -> None:
    """The Test action with a good key, then (after `revoke()`) a refused one, through the API and the page."""
    api = APIClient()
    api.force_authenticate(admin_user)
    url = f"/api/v1/connections/{connection_name}/test/"

    response = api.post(url)
    assert response.json() == {"ok": True, "status": 200, "message": f"{label} accepted the credentials."}

    client.force_login(admin_user)
    page = client.post(f"/settings/connections/{connection_name}/test/", follow=True).content.decode()
    assert f"{label} accepted the credentials." in page

    revoke()
    response = api.post(url)
    body = response.json()
    assert response.status_code == 200 and body["ok"] is False and body["status"] == 401
    assert body["message"].startswith(f"{label} rejected the connection's credentials (HTTP 401)")
    page = client.post(f"/settings/connections/{connection_name}/test/", follow=True).content.decode()
    assert "failed (provider status 401)" in page
    for text in (response.content.decode(), page):
        assert PLANTED_KEY not in text


def assert_task_refused_at_creation(admin_user, connection_name: str, task: str, message: str) -> None:
    """Creating an endpoint for a task the provider lacks is a 400 naming it, before any call."""
    api = APIClient()
    api.force_authenticate(admin_user)
    response = api.post("/api/v1/endpoints/", {"name": "nope", "connection": connection_name, "model": "m",
                                               "task": task}, format="json")
    assert response.status_code == 400
    body = response.json()
    # An unknown task is the task's error; a known one the provider lacks, the destination's.
    messages = body.get("task", []) + [m for row in body.get("destinations", {}).values() for m in row["connection"]]
    assert any(message in text for text in messages), body
    assert not Endpoint.objects.filter(name="nope").exists()


UNCARRIED_OPTIONS = ({"n": 2}, {"logprobs": True}, {"seed": 7}, {"response_format": {"type": "json_object"}})


def assert_uncarried_options_refused(endpoint: Endpoint, fake, provider: str, *, carried: tuple[str, ...] = ()) -> None:
    """An option the translation cannot carry is a 400 naming it, and the provider is never called."""
    for option in UNCARRIED_OPTIONS:
        name = next(iter(option))
        if name in carried:
            continue
        error = invoke_error(endpoint, {"messages": [{"role": "user", "content": "Hi"}], **option})
        assert (error.status, error.code) == (400, "unsupported_parameter"), name
        assert f"'{name}' cannot be carried to {provider}" in error.message
    assert fake.requests == []
