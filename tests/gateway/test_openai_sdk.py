"""The official OpenAI Python SDK, pointed at our live server's /gateway/v1, works as with OpenAI itself."""

import openai
import pytest
from django.contrib.auth.models import Permission

from tests.conftest import PLANTED_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.cohere import FakeCohere
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sdk(asgi_live_server, django_user_model):
    user = django_user_model.objects.create_user("sdk-user")
    user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    _, token = ApiToken.issue(user=user)
    client = openai.OpenAI(base_url=f"{asgi_live_server.url}/gateway/v1", api_key=token, max_retries=0, timeout=10)
    yield client
    client.close()


@pytest.fixture
def endpoints(openai_chat, make_endpoint):
    make_endpoint("embed", openai_chat.connections.get(), model="text-embedding-3-small", task="embeddings")


def test_the_sdk_gets_a_chat_completion(sdk, endpoints, fake_openai):
    completion = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}])
    assert completion.choices[0].message.content
    assert fake_openai.presented_keys() == [PLANTED_KEY]


def test_the_sdk_streams(sdk, endpoints):
    stream = sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}], stream=True)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text == "Hello from the fake"


def test_the_sdk_gets_embeddings_and_the_models_list(sdk, endpoints):
    assert len(sdk.embeddings.create(model="embed", input="hello").data[0].embedding) > 0
    assert sorted(model.id for model in sdk.models.list()) == ["chat", "embed"]


def test_the_sdk_raises_its_own_typed_errors(sdk, endpoints, fake_openai, asgi_live_server):
    with pytest.raises(openai.RateLimitError):
        fake_openai.fail(429, "Slow down", headers={"Retry-After": "30"}, times=3)
        sdk.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}])
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="missing", messages=[{"role": "user", "content": "Hi"}])
    stranger = openai.OpenAI(base_url=f"{asgi_live_server.url}/gateway/v1", api_key="llmc_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        stranger.chat.completions.create(model="chat", messages=[{"role": "user", "content": "Hi"}])
    assert caught.value.body["code"] == "invalid_api_key"


def test_the_sdk_reads_translated_providers_answers_and_streams(sdk, make_connection, make_endpoint):
    with FakeAnthropic(keys={PLANTED_KEY}) as claude, FakeCohere(keys={PLANTED_KEY}) as cohere:
        claude.tool_use = {"id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
        make_endpoint("claude", make_connection("claude", provider="anthropic", config={"base_url": claude.url}),
                      model="claude-sonnet-4-5")
        cohere_connection = make_connection("cohere", provider="cohere", config={"base_url": cohere.url})
        make_endpoint("cohere-embed", cohere_connection, model="embed-v4.0", task="embeddings")
        messages = [{"role": "user", "content": "Weather in Oslo?"}]

        completion = sdk.chat.completions.create(model="claude", messages=messages)
        assert completion.choices[0].finish_reason == "tool_calls"
        assert completion.choices[0].message.tool_calls[0].function.name == "weather"
        chunks = list(sdk.chat.completions.create(model="claude", messages=messages, stream=True,
                                                  stream_options={"include_usage": True}))
        assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices) == "Hello from Claude"
        assert chunks[-1].usage.total_tokens == 18
        assert sdk.embeddings.create(model="cohere-embed", input=["a", "b"]).data[1].embedding == [0.5, 0.25, 1.0]


def test_the_sdk_reads_translated_gemini_answers_and_streams(sdk, make_endpoint, gemini_connection, fake_gemini):
    make_endpoint("gemini-chat", gemini_connection, model="gemini-2.0-flash")
    make_endpoint("gemini-embed", gemini_connection, model="text-embedding-004", task="embeddings")

    completion = sdk.chat.completions.create(model="gemini-chat", messages=[{"role": "user", "content": "Hi"}])
    assert completion.choices[0].message.content == "Hello from Gemini"
    assert completion.usage.total_tokens == 11
    stream = sdk.chat.completions.create(model="gemini-chat", messages=[{"role": "user", "content": "Hi"}],
                                         stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from Gemini"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert sdk.embeddings.create(model="gemini-embed", input=["a", "b"]).data[1].embedding == [0.5, 1.0, -1.0]


def test_the_sdk_reads_vertex_answers(sdk, make_endpoint, vertex_connection, fake_vertex):
    make_endpoint("vertex-chat", vertex_connection, model="gemini-2.0-flash")

    completion = sdk.chat.completions.create(model="vertex-chat", messages=[{"role": "user", "content": "Hi"}])

    assert completion.choices[0].message.content == "Hello from Gemini"
