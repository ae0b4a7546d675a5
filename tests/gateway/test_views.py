"""The gateway's routes over HTTP: Bearer tokens, endpoint lookup, OpenAI-shaped answers and errors."""

import json
import logging

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from connections.models import Connection
from tests.conftest import PLANTED_KEY
from tests.fakes.server import closed_port
from tests.provider_fixtures import CHAT_BODY
from tokens.models import ApiToken

ROTATED_KEY = "sk-rotated-9876543210-ZYXWVUTSrqpo"


def post(client, path: str, body: object, **extra):
    return client.post(path, json.dumps(body) if not isinstance(body, bytes) else body,
                       content_type="application/json", **extra)


def error_of(response) -> dict:
    document = response.json()
    assert set(document) == {"error"} and set(document["error"]) == {"message", "type", "code"}
    return document["error"]


def test_chat_completions_call_the_endpoints_provider_with_the_connections_key(gateway, openai_chat, fake_openai):
    response = post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert response.status_code == 200
    assert response.json()["object"] == "chat.completion"
    assert response.json()["choices"][0]["message"]["content"]
    assert fake_openai.presented_keys() == [PLANTED_KEY]
    assert fake_openai.requests[0].json()["model"] == "gpt-4o-mini"


def test_invocations_use_the_endpoints_own_task(gateway, openai_chat, make_endpoint, fake_openai):
    assert post(gateway, "/gateway/chat/invocations", {"messages": CHAT_BODY["messages"]}).status_code == 200
    make_endpoint("embed", openai_chat.connections.get(), model="text-embedding-3-small", task="embeddings")
    response = post(gateway, "/gateway/embed/invocations", {"input": "hello"})
    assert response.status_code == 200
    assert response.json()["data"][0]["embedding"]
    assert fake_openai.requests[-1].path == "/v1/embeddings"


def test_embeddings_route_names_the_endpoint_in_model(gateway, openai_chat, make_endpoint, fake_openai):
    make_endpoint("embed", openai_chat.connections.get(), model="text-embedding-3-small", task="embeddings")
    response = post(gateway, "/gateway/v1/embeddings", {"model": "embed", "input": ["a", "b"]})
    assert response.status_code == 200 and response.json()["object"] == "list"


def test_models_lists_the_enabled_endpoints(gateway, openai_chat, make_endpoint):
    make_endpoint("off", openai_chat.connections.get(), enabled=False)
    response = gateway.get("/gateway/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["chat"]
    assert response.json()["data"][0]["owned_by"] == "openai"


def test_a_stream_is_relayed_as_server_sent_events_ending_with_done(gateway, openai_chat):
    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "stream": True})
    assert response.status_code == 200 and response["Content-Type"] == "text/event-stream"
    body = b"".join(response.streaming_content).decode()
    events = [line[6:] for line in body.splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert "".join(json.loads(e)["choices"][0]["delta"].get("content", "") for e in events[:-1]) == "Hello from the fake"


@pytest.mark.parametrize("authorization", [None, "Bearer llmc_not-a-real-token", "Basic dXNlcjpwYXNz", "Bearer "])
def test_a_missing_or_bad_token_is_a_401_with_the_bearer_challenge(client, openai_chat, fake_openai, authorization):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    response = post(client, "/gateway/v1/chat/completions", CHAT_BODY, **extra)
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Bearer"
    assert error_of(response)["code"] == "invalid_api_key"
    assert fake_openai.requests == []


def test_revoked_and_expired_tokens_are_refused(client, caller, openai_chat):
    token = ApiToken.objects.get(user=caller[0])
    for change in ({"revoked_at": timezone.now()}, {"revoked_at": None, "expires_at": timezone.now()}):
        ApiToken.objects.filter(pk=token.pk).update(**change)
        response = post(client, "/gateway/v1/chat/completions", CHAT_BODY, HTTP_AUTHORIZATION=f"Bearer {caller[1]}")
        assert response.status_code == 401


def test_a_user_without_view_endpoint_permission_is_a_403(client, django_user_model, openai_chat, fake_openai):
    _, token = ApiToken.issue(user=django_user_model.objects.create_user("nobody"))
    response = post(client, "/gateway/v1/chat/completions", CHAT_BODY, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403 and "view_endpoint" in error_of(response)["message"]
    assert fake_openai.requests == []


def test_unknown_and_disabled_endpoints(gateway, openai_chat, fake_openai):
    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "model": "nope"})
    assert response.status_code == 404 and error_of(response)["code"] == "endpoint_not_found"
    assert post(gateway, "/gateway/nope/invocations", CHAT_BODY).status_code == 404
    openai_chat.enabled = False
    openai_chat.save()
    response = post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert response.status_code == 403 and error_of(response)["code"] == "endpoint_disabled"
    assert fake_openai.requests == []


@pytest.mark.parametrize(
    "path, body, code",
    [
        ("/gateway/v1/embeddings", {"model": "chat", "input": "x"}, "wrong_task"),
        ("/gateway/v1/chat/completions", {"model": "chat"}, "invalid_body"),
        ("/gateway/v1/chat/completions", {"messages": []}, "model_required"),
        ("/gateway/v1/chat/completions", [1, 2], "model_required"),
        ("/gateway/v1/chat/completions", b"{not json", "invalid_json"),
        ("/gateway/v1/chat/completions", b"\xff\xfe", "invalid_json"),
        ("/gateway/v1/chat/completions", b"[" * 100000, "invalid_json"),
    ],
)
def test_bad_requests_are_400s_that_say_what_is_wrong(gateway, openai_chat, fake_openai, path, body, code):
    response = post(gateway, path, body)
    assert response.status_code == 400 and error_of(response)["code"] == code
    assert fake_openai.requests == []


@pytest.mark.parametrize("body", [CHAT_BODY, b"{not json", {"messages": []}, {"model": "nope", "messages": []},
                                  {**CHAT_BODY, "padding": "x" * 100_000}])
@pytest.mark.parametrize("token", ["llmc_not-a-real-token", None])
def test_a_bad_or_missing_token_is_a_401_whatever_the_body(client, openai_chat, fake_openai, body, token):
    extra = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    response = post(client, "/gateway/v1/chat/completions", body, **extra)
    assert response.status_code == 401 and error_of(response)["code"] == "invalid_api_key"
    assert fake_openai.requests == []


@pytest.mark.parametrize("body, status, code", [
    (b"{not json", 400, "invalid_json"), ({"messages": []}, 400, "model_required"),
    ({"model": "nope", "messages": []}, 404, "endpoint_not_found"),
])
def test_a_token_that_may_not_call_is_refused_before_the_body_is_judged(client, caller, body, status, code):
    user, token = caller
    user.user_permissions.clear()
    response = post(client, "/gateway/v1/chat/completions", body, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"
    user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    response = post(client, "/gateway/v1/chat/completions", body, HTTP_AUTHORIZATION=f"Bearer {token}")
    assert response.status_code == status and error_of(response)["code"] == code


def test_the_wrong_method_is_a_json_405(gateway, openai_chat):
    response = gateway.get("/gateway/v1/chat/completions")
    assert response.status_code == 405 and response["Allow"] == "POST"
    assert error_of(response)["code"] == "method_not_allowed"


def test_a_huge_body_is_a_413(gateway, openai_chat):
    response = post(gateway, "/gateway/v1/chat/completions", b"x" * (20 * 1024 * 1024 + 1))
    assert response.status_code == 413


@pytest.mark.parametrize(
    "upstream_status, status, code",
    [(400, 400, None), (404, 404, None), (422, 422, None),
     (401, 401, "upstream_credentials_rejected"), (403, 401, "upstream_credentials_rejected"),
     (500, 502, None), (503, 502, None)],
)
def test_provider_errors_map_to_the_gateways_error_table_without_the_key(
    gateway, openai_chat, fake_openai, caplog, upstream_status, status, code
):
    caplog.set_level(logging.DEBUG)
    fake_openai.fail(upstream_status, "Incorrect API key provided: {key} ({auth})", times=3)
    response = post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert response.status_code == status
    error = error_of(response)
    if code:
        assert error["code"] == code
    assert PLANTED_KEY not in response.content.decode() and PLANTED_KEY not in caplog.text
    assert PLANTED_KEY[10:30] not in response.content.decode()


def test_a_rate_limit_keeps_retry_after(gateway, openai_chat, fake_openai):
    fake_openai.fail(429, "Slow down", headers={"Retry-After": "30"}, times=3)
    response = post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert response.status_code == 429 and response["Retry-After"] == "30"


def test_an_unreachable_provider_is_a_502(gateway, make_connection, make_endpoint):
    connection = make_connection("down", config={"base_url": f"http://127.0.0.1:{closed_port()}/v1"})
    make_endpoint("down-chat", connection)
    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "model": "down-chat"})
    assert response.status_code == 502


def test_a_provider_that_does_not_answer_in_time_is_a_504(gateway, openai_chat, fake_openai, settings):
    settings.GATEWAY_TIMEOUT = 0.3
    fake_openai.hang(2)
    response = post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert response.status_code == 504


def test_undecryptable_secrets_are_a_503_naming_the_connection(gateway, openai_chat, fake_openai, use_keys):
    from cryptography.fernet import Fernet

    use_keys(Fernet.generate_key().decode())
    response = post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert response.status_code == 503
    error = error_of(response)
    assert error["code"] == "connection_secrets_unavailable" and "openai-prod" in error["message"]
    assert fake_openai.requests == []


def test_a_key_rotated_through_the_api_is_used_by_the_next_call(gateway, openai_chat, fake_openai, admin_user):
    assert post(gateway, "/gateway/v1/chat/completions", CHAT_BODY).status_code == 200
    fake_openai.keys.add(ROTATED_KEY)
    api = APIClient()
    api.force_authenticate(admin_user)
    patched = api.patch("/api/v1/connections/openai-prod/", {"secrets": {"api_key": ROTATED_KEY}}, format="json")
    assert patched.status_code == 200
    assert post(gateway, "/gateway/v1/chat/completions", CHAT_BODY).status_code == 200
    assert fake_openai.presented_keys() == [PLANTED_KEY, ROTATED_KEY]
    assert Connection.objects.get(name="openai-prod").last_used_at is not None


def test_a_gateway_call_costs_a_constant_number_of_queries(gateway, openai_chat, django_assert_max_num_queries):
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)  # last_used_at written once
    with django_assert_max_num_queries(3):  # the caller (token, user, permission), the endpoint, its connection
        assert post(gateway, "/gateway/v1/chat/completions", CHAT_BODY).status_code == 200


def test_healthz_reports_database_and_keys(client, make_connection, use_keys):
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok", "encryption": "ok"}
    from cryptography.fernet import Fernet

    use_keys(Fernet.generate_key().decode())
    make_connection("one")
    use_keys(Fernet.generate_key().decode())
    response = client.get("/healthz")
    assert response.status_code == 503 and response.json()["status"] == "unavailable"


def test_with_https_on_healthz_still_answers_plain_http_while_everything_else_redirects(db, client, settings):
    """A load balancer checks each instance on its own address, without TLS (HTTPS=true sets the redirect)."""
    settings.SECURE_SSL_REDIRECT = True

    assert client.get("/healthz").status_code == 200
    response = client.get("/settings/")
    assert response.status_code == 301 and response["Location"] == "https://testserver/settings/"


def test_the_permission_may_come_from_a_group_and_its_removal_applies_at_once(client, django_user_model, openai_chat):
    from django.contrib.auth.models import Group

    group = Group.objects.create(name="callers")
    group.permissions.add(Permission.objects.get(codename="view_endpoint"))
    user = django_user_model.objects.create_user("member")
    user.groups.add(group)
    _, token = ApiToken.issue(user=user)
    assert post(client, "/gateway/v1/chat/completions", CHAT_BODY, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 200
    user.groups.remove(group)
    assert post(client, "/gateway/v1/chat/completions", CHAT_BODY, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 403


def test_an_inactive_users_token_is_refused_and_a_superusers_is_allowed(client, caller, admin_user, openai_chat):
    user, token = caller
    user.is_active = False
    user.save()
    assert post(client, "/gateway/v1/chat/completions", CHAT_BODY, HTTP_AUTHORIZATION=f"Bearer {token}").status_code == 401
    _, root_token = ApiToken.issue(user=admin_user)  # a superuser holds every permission without a grant
    assert post(client, "/gateway/v1/chat/completions", CHAT_BODY,
                HTTP_AUTHORIZATION=f"Bearer {root_token}").status_code == 200


def test_a_call_records_the_tokens_last_use_at_most_once_a_minute(gateway, caller, openai_chat, fake_openai):
    token = ApiToken.objects.get(user=caller[0])
    assert token.last_used_at is None
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timezone.timedelta(minutes=2))
    post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


def test_a_name_holding_nul_is_an_unknown_endpoint_on_every_database(gateway, openai_chat):
    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "model": "chat\x00"})
    assert response.status_code == 404
    assert post(gateway, "/gateway/chat%00/invocations", CHAT_BODY).status_code == 404


def test_a_call_carries_the_sites_headers_and_leaves_a_browser_session_alone(gateway, openai_chat, admin_user):
    """Gateway calls skip the session, CSRF and auth middleware (gateway/middleware.py), not the site's headers."""
    gateway.force_login(admin_user)
    session_cookie = gateway.cookies["sessionid"].value

    response = post(gateway, "/gateway/v1/chat/completions", CHAT_BODY)

    assert response.status_code == 200
    assert "sessionid" not in response.cookies and "csrftoken" not in response.cookies
    assert "Cookie" not in response.get("Vary", "")
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    assert gateway.cookies["sessionid"].value == session_cookie


# --- Hostile or careless providers and callers -------------------------------------------------------------


@pytest.fixture
def echoing(make_connection, make_endpoint):
    """A provider that answers successfully, repeating the credentials it was sent in its answer."""
    from tests.fakes.server import FakeServer, Reply

    def handle(request):
        key = request.headers.get("authorization", "").removeprefix("Bearer ")
        if request.json().get("stream"):
            event = {"choices": [{"index": 0, "delta": {"content": f"your key is {key}"}}]}
            return Reply(200, {"Content-Type": "text/event-stream"},
                         chunks=[b"data: " + json.dumps(event).encode() + b"\n\n", b"data: [DONE]\n\n"])
        return Reply.json({"object": "chat.completion", "choices": [
            {"index": 0, "message": {"role": "assistant", "content": f"your key is {key}"}, "finish_reason": "stop"}]})

    with FakeServer(handle) as server:
        make_endpoint("chat", make_connection("echo", config={"base_url": f"{server.url}/v1"}))
        yield server


@pytest.mark.parametrize("stream", [False, True])
def test_a_key_the_provider_echoes_in_a_successful_answer_never_reaches_the_caller(gateway, echoing, stream):
    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "stream": stream})

    assert response.status_code == 200
    assert PLANTED_KEY not in response.content.decode() and "your key is [redacted]" in response.content.decode()


def test_a_lone_surrogate_in_the_body_is_a_400(gateway, openai_chat, fake_openai):
    body = b'{"model": "chat", "messages": [{"role": "user", "content": "\\ud800"}]}'

    response = post(gateway, "/gateway/v1/chat/completions", body)

    assert response.status_code == 400 and error_of(response)["code"] == "invalid_json"
    assert fake_openai.requests == []


@pytest.fixture
def answering(make_connection, make_endpoint):
    """A provider whose answer to a stream request the test sets: (content type, body chunks)."""
    from tests.fakes.server import FakeServer, Reply

    answer = {"reply": ("text/event-stream", [b"data: {}\n\n"])}

    def handle(request):
        content_type, chunks = answer["reply"]
        return Reply(200, {"Content-Type": content_type}, chunks=chunks)

    with FakeServer(handle) as server:
        make_endpoint("chat", make_connection("odd", config={"base_url": f"{server.url}/v1"}))
        yield answer


@pytest.mark.parametrize("content_type, body", [
    ("application/json", b'{"id": "chatcmpl-1", "object": "chat.completion"}'),
    ("text/html", b"<html><body>502 Bad Gateway</body></html>"),
    ("", b"\x00\x01garbage"),
])
def test_a_stream_answered_with_something_else_is_a_502_before_the_first_byte(gateway, answering, content_type,
                                                                              body):
    answering["reply"] = (content_type, [body])

    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "stream": True})

    assert response.status_code == 502 and error_of(response)["code"] == "upstream_invalid_response"


def test_an_event_stream_that_turns_into_garbage_ends_with_an_error_event(gateway, answering):
    first = b'data: {"choices": [{"index": 0, "delta": {"content": "Hi"}}]}\n\n'
    answering["reply"] = ("text/event-stream", [first, b"<html>oops</html>\n\n", b"data: more\n\n"])

    response = post(gateway, "/gateway/v1/chat/completions", {**CHAT_BODY, "stream": True})

    events = [line[6:] for line in response.content.decode().splitlines() if line.startswith("data: ")]
    assert response.status_code == 200 and response.content.startswith(first)
    assert json.loads(events[1])["error"]["code"] == "upstream_invalid_response" and events[-1] == "[DONE]"
    assert "oops" not in response.content.decode() and "more" not in response.content.decode()
