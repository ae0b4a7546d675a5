"""Fakes of providers and the connections and endpoints that call them, shared by the provider, gateway and
connection tests (registered in tests/conftest.py)."""

import pytest
from django.contrib.auth.models import Permission

from endpoints.models import Endpoint
from providers.oauth import TOKENS
from tests import provider_calls
from tests.asgi_client import AsgiClient
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI
from tokens.models import ApiToken

AZURE_API_VERSION = "2024-10-21"


@pytest.fixture(autouse=True)
def provider_loop():
    """Each test calls providers on a loop of its own (tests/provider_calls.py) and starts without cached
    access tokens from the one before."""
    loop = provider_calls.start()
    yield loop
    provider_calls.stop(loop)
    TOKENS.clear()


@pytest.fixture
def site():
    """The site as the server serves it (config/asgi.py: the gateway and /healthz in front of Django)."""
    return AsgiClient()


@pytest.fixture
def caller(django_user_model):
    """A user who may call endpoints, and a token of theirs."""
    user = django_user_model.objects.create_user("svc", password="pw-svc-123456")
    user.user_permissions.add(Permission.objects.get(codename="view_endpoint"))
    _, token = ApiToken.issue(user=user)
    return user, token


@pytest.fixture
def gateway(caller):
    """The site as the server serves it, with the caller's token on every request."""
    return AsgiClient(HTTP_AUTHORIZATION=f"Bearer {caller[1]}")


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


@pytest.fixture
def fake_google_token():
    from tests.fakes.google_token import FakeGoogleToken

    with FakeGoogleToken() as fake:
        yield fake


@pytest.fixture
def service_account(fake_google_token) -> dict:
    """A service account key the fake token service accepts; its private_key_id is the planted secret."""
    from tests.fakes.google_token import make_service_account

    info = make_service_account(fake_google_token.token_uri, private_key_id=PLANTED_KEY)
    fake_google_token.accept(info)
    return info


@pytest.fixture
def fake_vertex(fake_google_token):
    from tests.fakes.gemini import FakeGemini

    with FakeGemini(vertex=True, token_valid=fake_google_token.valid) as fake:
        yield fake


@pytest.fixture
def vertex_connection(make_connection, fake_vertex, service_account):
    return make_connection(
        "vertex-prod", provider="vertex_ai", auth_method="service_account",
        secrets={"service_account_json": service_account},
        config={"project_id": "my-project-123", "location": "europe-west4", "base_url": fake_vertex.url},
    )


@pytest.fixture
def vertex_chat(make_endpoint, vertex_connection) -> Endpoint:
    return make_endpoint("vertex-chat", vertex_connection, model="gemini-2.0-flash")
