"""The gateway's error table (README.md, Gateway), row by row against a real fake provider."""

import base64
import logging
from urllib.parse import quote

import httpx
import pytest

from endpoints.models import Endpoint
from providers.adapters import adapter_for
from providers.errors import GatewayError, from_upstream_response, provider_error_parts, safe_message
from tests.conftest import PLANTED_KEY
from tests.fakes.server import closed_port
from tests.provider_fixtures import CHAT_BODY
from tests.provider_calls import run

pytestmark = pytest.mark.django_db


def call_error(endpoint: Endpoint, body: dict = CHAT_BODY) -> GatewayError:
    endpoint = Endpoint.objects.prefetch_related("destinations__connection").get(pk=endpoint.pk)
    with pytest.raises(GatewayError) as raised:
        run(adapter_for(endpoint.destinations.get().connection.provider).invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, body))
    return raised.value


def assert_openai_shape(error: GatewayError) -> None:
    assert set(error.body()) == {"error"}
    assert set(error.body()["error"]) == {"message", "type", "code"}
    assert all(isinstance(value, str) and value for value in error.body()["error"].values())


# --- The table ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 422])
def test_upstream_400_404_422_keep_their_status_and_the_providers_message(status, openai_chat, fake_openai):
    fake_openai.fail(status, "The model `gpt-5-nope` does not exist.", code="model_not_found")

    error = call_error(openai_chat)

    assert (error.status, error.type, error.code) == (status, "invalid_request_error", "model_not_found")
    assert error.message == "The model `gpt-5-nope` does not exist."
    assert error.upstream_status == status
    assert_openai_shape(error)


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_401_403_become_401_credentials_rejected(status, openai_chat, fake_openai):
    fake_openai.fail(status, "Your organization is not allowed to use this model.")

    error = call_error(openai_chat)

    assert (error.status, error.type, error.code) == (401, "authentication_error", "upstream_credentials_rejected")
    assert error.message == (
        f"OpenAI rejected the connection's credentials (HTTP {status}): "
        "Your organization is not allowed to use this model."
    )
    assert_openai_shape(error)


def test_a_key_the_provider_does_not_accept_is_401_without_the_partly_echoed_key(openai_chat, fake_openai):
    fake_openai.keys = set()

    error = call_error(openai_chat)

    assert (error.status, error.code) == (401, "upstream_credentials_rejected")
    assert "Incorrect API key provided: [redacted]" in error.message
    assert PLANTED_KEY[-4:] not in error.message


def test_upstream_429_is_429_with_the_providers_retry_after(openai_chat, fake_openai):
    fake_openai.fail(429, "Rate limit reached for requests.", headers={"Retry-After": "30"})

    error = call_error(openai_chat)

    assert (error.status, error.type, error.code) == (429, "rate_limit_error", "upstream_rate_limited")
    assert error.headers() == {"Retry-After": "30"}
    assert "Rate limit reached" in error.message
    assert len(fake_openai.requests) == 1  # 30 s is too long to wait for: passed on, not retried


def test_upstream_429_without_retry_after_still_tells_the_client_when_to_retry(openai_chat, fake_openai):
    fake_openai.fail(429, "Slow down.")

    assert call_error(openai_chat).headers() == {"Retry-After": "1"}


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_upstream_5xx_is_502(status, openai_chat, fake_openai):
    fake_openai.fail(status, "The server had an error while processing your request.")

    error = call_error(openai_chat)

    assert (error.status, error.code) == (502, "upstream_error")
    assert error.message.startswith(f"OpenAI answered HTTP {status}: The server had an error")
    assert_openai_shape(error)


def test_an_unreachable_provider_is_502(make_connection, make_endpoint):
    connection = make_connection(config={"base_url": f"http://127.0.0.1:{closed_port()}/v1"})

    error = call_error(make_endpoint("chat", connection))

    assert (error.status, error.code) == (502, "upstream_unreachable")
    assert error.message == "Could not connect to OpenAI."
    assert_openai_shape(error)


def test_a_provider_that_does_not_answer_in_time_is_504(openai_chat, fake_openai, settings):
    settings.GATEWAY_TIMEOUT = 0.3
    fake_openai.hang(5)

    error = call_error(openai_chat)

    assert (error.status, error.type, error.code) == (504, "timeout_error", "upstream_timeout")
    assert len(fake_openai.requests) == 1  # a POST that timed out may have run: never sent twice
    assert_openai_shape(error)


def test_a_streamed_call_maps_errors_before_any_event(openai_chat, fake_openai):
    fake_openai.fail(404, "No such model.")

    error = call_error(openai_chat, {**CHAT_BODY, "stream": True})

    assert (error.status, error.message) == (404, "No such model.")


def test_an_answer_that_is_not_json_is_502(openai_chat, fake_openai):
    fake_openai.fail_with_body(200, "<html>proxy login</html>")

    error = call_error(openai_chat)

    assert (error.status, error.code) == (502, "upstream_invalid_response")


def test_a_redirect_is_502_and_not_followed(openai_chat, fake_openai):
    fake_openai.fail_with_body(307, "moved", headers={"Location": "https://attacker.example/v1/chat/completions"})

    error = call_error(openai_chat)

    assert (error.status, error.code) == (502, "upstream_redirect")
    assert len(fake_openai.requests) == 1


def test_a_non_json_error_body_is_used_as_the_message(openai_chat, fake_openai):
    fake_openai.fail_with_body(400, "bad things happened")

    error = call_error(openai_chat)

    assert (error.status, error.code, error.message) == (400, "upstream_bad_request", "bad things happened")


# --- Keys never leave -----------------------------------------------------------------------------------

ECHOES = [
    "Invalid request for key {key}.",
    "Invalid request, see https://api.example.com/v1?key={key_url}",
    "Credentials {key_b64} refused.",
    "Header was: {auth}",
]


@pytest.mark.parametrize("echo", ECHOES)
@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_an_echoed_key_reaches_neither_the_answer_nor_the_logs(echo, status, openai_chat, fake_openai, caplog):
    caplog.set_level(logging.DEBUG)
    for name in ("httpx", "httpcore", "gateway"):
        caplog.set_level(logging.DEBUG, logger=name)
    fake_openai.fail(status, echo)

    error = call_error(openai_chat)

    forms = [PLANTED_KEY, quote(PLANTED_KEY, safe=""), base64.b64encode(f"user:{PLANTED_KEY}".encode()).decode()]
    for form in forms:
        for exit_ in (error.message, str(error), repr(error), str(error.body()), caplog.text):
            assert form not in exit_
    assert "[redacted]" in error.message
    assert caplog.records  # the failure was logged, without the key


def test_an_azure_error_echoing_the_api_key_header_is_redacted(azure_chat, fake_openai):
    fake_openai.fail(400, "api-key: {key} is not valid for this deployment")

    error = call_error(azure_chat)

    assert PLANTED_KEY not in error.message
    assert error.message == "api-key: [redacted] is not valid for this deployment"


# --- Redaction itself -----------------------------------------------------------------------------------

def test_a_long_message_is_trimmed_after_redaction_so_no_half_key_survives():
    text = "x" * 990 + " " + PLANTED_KEY

    message = safe_message(text, [PLANTED_KEY])

    assert PLANTED_KEY[:10] not in message
    assert len(message) <= 1001


def test_an_http_date_retry_after_becomes_seconds():
    headers = httpx.Headers({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})  # in the past: retry now

    error = from_upstream_response(429, headers, b"{}", secrets=[], provider="OpenAI")

    assert error.retry_after == "0"


def test_an_unusual_4xx_is_a_400_naming_the_status():
    error = from_upstream_response(413, httpx.Headers(), b'{"error": {"message": "Too large"}}',
                                   secrets=[], provider="OpenAI")

    assert (error.status, error.code, error.message) == (400, "upstream_413", "OpenAI answered HTTP 413: Too large")


def test_a_provider_code_carrying_a_key_is_not_passed_on():
    body = b'{"error": {"message": "m", "code": "%s"}}' % PLANTED_KEY.encode()

    error = from_upstream_response(400, httpx.Headers(), body, secrets=[PLANTED_KEY], provider="OpenAI")

    assert error.code == "upstream_bad_request"


def test_gateway_errors_have_openai_shape_and_a_short_repr():
    error = GatewayError(429, "rate_limit_error", "upstream_rate_limited", "Slow down.", retry_after="3")

    assert error.body() == {
        "error": {"message": "Slow down.", "type": "rate_limit_error", "code": "upstream_rate_limited"}
    }
    assert error.headers() == {"Retry-After": "3"}
    assert repr(error) == "<GatewayError 429 upstream_rate_limited>"


@pytest.mark.parametrize("body, message, code", [
    (b'{"type": "error", "error": {"type": "rate_limit_error", "message": "Slow"}}', "Slow", "rate_limit_error"),
    (b'{"error": "invalid_client", "error_description": "Client authentication failed"}',
     "invalid_client: Client authentication failed", ""),
    (b'{"id": "abc", "message": "invalid api token"}', "invalid api token", ""),
    (b'{"error_code": "PERMISSION_DENIED", "message": "No access"}', "No access", ""),
])
def test_anthropic_oauth_cohere_and_databricks_error_shapes_give_their_message(body, message, code):
    assert provider_error_parts(body) == (message, code)


GOOGLE_KEY_INVALID = (
    b'{"error": {"code": 400, "message": "API key not valid. Please pass a valid API key.", '
    b'"status": "INVALID_ARGUMENT", "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", '
    b'"reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}}'
)


def test_a_google_error_gives_its_message_and_status_name():
    body = b'{"error": {"code": 404, "message": "models/x is not found.", "status": "NOT_FOUND"}}'

    error = from_upstream_response(404, httpx.Headers(), body, secrets=[], provider="Google Gemini")

    assert (error.status, error.code, error.message) == (404, "NOT_FOUND", "models/x is not found.")


def test_a_google_error_in_a_list_as_streams_send_it_gives_its_message():
    body = b'[{"error": {"code": 400, "message": "Bad request.", "status": "INVALID_ARGUMENT"}}]'

    error = from_upstream_response(400, httpx.Headers(), body, secrets=[], provider="Google Gemini")

    assert (error.status, error.code, error.message) == (400, "INVALID_ARGUMENT", "Bad request.")


def test_googles_400_for_an_invalid_api_key_is_a_rejected_credential():
    error = from_upstream_response(400, httpx.Headers(), GOOGLE_KEY_INVALID, secrets=[], provider="Google Gemini")

    assert (error.status, error.code, error.upstream_status) == (401, "upstream_credentials_rejected", 400)
    assert error.message == ("Google Gemini rejected the connection's credentials (HTTP 400): "
                             "API key not valid. Please pass a valid API key.")
