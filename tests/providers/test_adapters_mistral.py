"""Mistral speaks OpenAI's API at https://api.mistral.ai/v1: the OpenAI family adapter calls it as is."""

import pytest

from providers.adapters.base import Target
from providers.adapters import adapter_for
from providers.adapters.openai import OpenAIAdapter
from tests.conftest import PLANTED_KEY
from tests.providers.adapter_checks import (
    assert_error_table, assert_secret_never_leaves, assert_streams_incrementally, assert_task_refused_at_creation,
    assert_test_action, contents_of, invoke, invoke_error,
)
from tests.provider_fixtures import CHAT_BODY
from tests.provider_calls import run

pytestmark = pytest.mark.django_db


@pytest.fixture
def mistral(make_connection, fake_openai):
    return make_connection("mistral", provider="mistral", config={"base_url": fake_openai.base_url})


@pytest.fixture
def mistral_chat(make_endpoint, mistral):
    return make_endpoint("mistral-chat", mistral, model="mistral-small-latest")


def test_the_registry_names_the_openai_adapter_and_the_public_address(make_connection):
    connection = make_connection("mistral-default", provider="mistral")

    assert isinstance(adapter_for("mistral"), OpenAIAdapter)
    call = run(adapter_for("mistral").build_call(connection.account(), Target("mistral-small-latest", "chat"), CHAT_BODY))
    assert call.url == "https://api.mistral.ai/v1/chat/completions"


def test_chat_goes_to_chat_completions_with_the_key_as_bearer(mistral_chat, fake_openai):
    answer = invoke(mistral_chat, CHAT_BODY)

    assert answer["choices"][0]["message"]["content"] == "Hello from the fake"
    [request] = fake_openai.requests
    assert (request.method, request.target) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {PLANTED_KEY}"
    assert request.json()["model"] == "mistral-small-latest"


def test_embeddings_go_to_embeddings(make_endpoint, mistral, fake_openai):
    endpoint = make_endpoint("mistral-embed", mistral, model="mistral-embed", task="embeddings")

    answer = invoke(endpoint, {"input": ["one", "two"]})

    assert [item["index"] for item in answer["data"]] == [0, 1]
    assert fake_openai.requests[0].json() == {"model": "mistral-embed", "input": ["one", "two"]}
    assert fake_openai.requests[0].target == "/v1/embeddings"


def test_a_stream_passes_through_as_it_arrives(mistral_chat, fake_openai):
    received = assert_streams_incrementally(mistral_chat, fake_openai, CHAT_BODY, first="Hel", rest=" fake")

    assert contents_of(received) == "Hello from the fake"


def test_upstream_errors_follow_the_gateway_error_table(mistral_chat, fake_openai):
    assert_error_table(mistral_chat, fake_openai, CHAT_BODY, "Mistral")


def test_mistrals_own_error_shape_gives_its_message(mistral_chat, fake_openai):
    fake_openai.fail_with_body(422, '{{"object": "error", "message": "Invalid model: mistral-nope", '
                                    '"type": "invalid_model", "param": null, "code": "1500"}}')

    error = invoke_error(mistral_chat, CHAT_BODY)

    assert (error.status, error.message, error.code) == (422, "Invalid model: mistral-nope", "upstream_unprocessable")


def test_the_key_never_leaves_in_answers_or_logs(mistral_chat, fake_openai, caplog):
    assert_secret_never_leaves(mistral_chat, fake_openai, CHAT_BODY, caplog)


def test_an_unknown_task_is_refused_at_endpoint_creation(mistral, admin_user):
    assert_task_refused_at_creation(admin_user, "mistral", "images", "images")


def test_the_test_action_lists_models(mistral, fake_openai, admin_user, client):
    assert_test_action("mistral", fake_openai, "Mistral", admin_user, client, revoke=fake_openai.keys.clear)

    assert (fake_openai.requests[0].method, fake_openai.requests[0].target) == ("GET", "/v1/models")
