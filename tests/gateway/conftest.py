import pytest

from endpoints.models import Endpoint
from gateway import upstream
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI

AZURE_API_VERSION = "2024-10-21"


@pytest.fixture(autouse=True)
def fresh_upstream_clients():
    """Each test starts without pooled sockets from the one before (fakes come and go on new ports)."""
    yield
    upstream.close_transports()


@pytest.fixture
def fake_openai():
    with FakeOpenAI(keys={PLANTED_KEY}) as fake:
        yield fake


@pytest.fixture
def openai_chat(make_connection, make_endpoint, fake_openai) -> Endpoint:
    connection = make_connection("openai-prod", config={"base_url": fake_openai.base_url})
    return make_endpoint("chat", connection, model="gpt-4o-mini")


@pytest.fixture
def azure_connection(make_connection, fake_openai):
    return make_connection(
        "azure-prod",
        auth_method="azure",
        config={"endpoint_url": fake_openai.url, "api_version": AZURE_API_VERSION},
    )


@pytest.fixture
def azure_chat(make_endpoint, azure_connection) -> Endpoint:
    return make_endpoint("azure-chat", azure_connection, model="my-gpt4o-deployment")


CHAT_BODY = {"model": "chat", "messages": [{"role": "user", "content": "Say hello"}]}


@pytest.fixture
def fake_gemini():
    from tests.fakes.gemini import FakeGemini

    with FakeGemini(keys={PLANTED_KEY}) as fake:
        yield fake


@pytest.fixture
def gemini_connection(make_connection, fake_gemini):
    return make_connection("gemini-prod", provider="gemini", config={"base_url": fake_gemini.url})


@pytest.fixture
def gemini_chat(make_endpoint, gemini_connection) -> Endpoint:
    return make_endpoint("gemini-chat", gemini_connection, model="gemini-2.0-flash")
