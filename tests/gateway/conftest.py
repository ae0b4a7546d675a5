import pytest

from endpoints.models import Endpoint
from gateway import upstream
from gateway.tokens import TOKENS
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI

AZURE_API_VERSION = "2024-10-21"


@pytest.fixture(autouse=True)
def fresh_upstream_clients():
    """Each test starts without pooled sockets or cached access tokens from the one before."""
    yield
    upstream.close_transports()
    TOKENS.clear()


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
