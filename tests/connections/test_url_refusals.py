"""A URL is saved only if the HTTP clients can call it: the API, the page and the admin refuse, with a message
saying what to write instead, every URL a client cannot parse or that reaches a refused address once read as
a client reads it (IDNA's NFKC, legacy IPv4 forms, IPv6 forms carrying an IPv4 address)."""

import pytest
from django.urls import reverse

from audit.models import AuditEntry
from connections.models import Connection
from tests.api_support import bearer_client, make_user, operator  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

# (base URL of an OpenAI-compatible server, which may be local; what the message says)
REFUSED = [
    ("https://0100.0.0.1/v1", "four decimal numbers"),  # octal-looking: 64.0.0.1 to the resolver, invalid to httpx
    ("https://①②⑦.0.0.2/v1", "Write the IP address as 127.0.0.2"),  # circled digits, which IDNA reads as 127
    ("http://0177.0.0.2:5714/v1", "Write the IP address as 127.0.0.2"),  # octal loopback
    ("https://１２７.0.0.1/v1", "Write the IP address as 127.0.0.1"),  # full-width digits
    ("https://127。0。0。1/v1", "Write the IP address as 127.0.0.1"),  # ideographic full stops
    ("http://0x7f.1:8000/v1", "Write the IP address as 127.0.0.1"),  # hex, two parts
    ("http://2130706433:8000/v1", "Write the IP address as 127.0.0.1"),  # one integer
    ("https://ｌｏｃａｌｈｏｓｔ/v1", "Write the host as 'localhost'"),  # full-width letters
    ("https://llm。example。com/v1", "Write the host as 'llm.example.com'"),
    ("https://exa<mple.com/v1", "not a host name HTTP clients accept"),
    ("https://a..b.example/v1", "not a host name HTTP clients accept"),
    ("https://xn--.example/v1", "not a host name HTTP clients accept"),
    ("https://[v1.x]/v1", "not a host name HTTP clients accept"),
    ("https://exa\\mple.com/v1", "not a host name HTTP clients accept"),
    ("https://" + "a" * 64 + ".example/v1", "not a host name HTTP clients accept"),
    ("https://llm.example:65536/v1", "port must be a number from 1 to 65535"),
    ("https://llm.example:0/v1", "port must be a number from 1 to 65535"),
    ("https://llm.example:٨٠/v1", "port must be a number from 1 to 65535"),  # Arabic-Indic digits
    ("https://llm.exa\u200bmple/v1", "invisible character"),  # a zero-width space
    ("https://llm.exa\u00admple/v1", "invisible character"),  # a soft hyphen
    ("http://[::1%25lo]:8000/v1", "zone"),
    ("https://[fe80::1%25eth0]/v1", "private"),
    ("https://[64:ff9b::a9fe:a9fe]/v1", "private"),  # NAT64 of the metadata address
    ("https://[::7f00:2]/v1", "private"),  # IPv4-compatible 127.0.0.2: not this machine's loopback
]
IDS = [url for url, _ in REFUSED]


def assert_refused(message: str, fragment: str) -> None:
    assert fragment in message, message
    assert not Connection.objects.exists() and not AuditEntry.objects.exists()


@pytest.mark.parametrize("url, fragment", REFUSED, ids=IDS)
def test_the_api_refuses_it(url, fragment, operator):
    response = bearer_client(operator).post(
        "/api/v1/connections/",
        {"name": "local-llm", "provider": "openai_compatible", "auth_method": "none", "secrets": {},
         "config": {"base_url": url}},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["config"]
    assert_refused(response.json()["config"]["base_url"][0], fragment)


@pytest.mark.parametrize("url, fragment", REFUSED, ids=IDS)
def test_the_page_refuses_it(url, fragment, admin_client):
    response = admin_client.post("/settings/connections/new/", {
        "name": "local-llm", "provider": "openai_compatible", "auth_method": "none",
        "selection": "openai_compatible/none", "config.base_url": url, "description": "",
    })
    assert response.status_code == 200
    assert 'id="id_config.base_url_error"' in response.content.decode()
    assert_refused(response.context["form"].errors["config.base_url"][0], fragment)


@pytest.mark.parametrize("url, fragment", REFUSED, ids=IDS)
def test_the_admin_refuses_it(url, fragment, admin_client):
    response = admin_client.post(reverse("admin:connections_connection_add"), {
        "name": "local-llm", "provider": "openai_compatible", "auth_method": "none",
        "selection": "openai_compatible/none", "config.base_url": url, "description": "",
    })
    assert response.status_code == 200
    assert_refused(response.context["adminform"].form.errors["config.base_url"][0], fragment)


@pytest.mark.parametrize(
    "url, address",
    [
        ("https://①②⑦.0.0.2/v1", "127.0.0.2"),
        ("https://0x7f.1/v1", "127.0.0.1"),
        ("https://２１３０７０６４３３/v1", "127.0.0.1"),
        ("https://[64:ff9b::169.254.169.254]/v1", ""),
    ],
)
def test_a_provider_that_is_never_local_calls_these_private(url, address, operator, settings):
    """Where loopback is no local server's, the refusal says which private address the host really is."""
    settings.ALLOWED_PRIVATE_HOSTS = []
    response = bearer_client(operator).post(
        "/api/v1/connections/",
        {"name": "proxy", "provider": "openai", "auth_method": "api_key", "secrets": {"api_key": "sk-" + "x" * 40},
         "config": {"base_url": url}},
        format="json",
    )
    assert response.status_code == 400
    message = response.json()["config"]["base_url"][0]
    assert "private, loopback, link-local or metadata address" in message and address in message
    assert_refused(message, "ALLOWED_PRIVATE_HOSTS")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1", "http://localhost:11434/v1", "http://[::1]:8000/v1",
        "https://llm.example.com/v1", "https://bücher.example/v1", "https://llm_gpu-01.example.com:8443/v1",
        "https://[2606:4700::6810:84e5]/v1", "https://llm.example.com./v1",
    ],
)
def test_what_clients_can_call_is_still_saved(url, operator):
    response = bearer_client(operator).post(
        "/api/v1/connections/",
        {"name": "local-llm", "provider": "openai_compatible", "auth_method": "none", "secrets": {},
         "config": {"base_url": url}},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert Connection.objects.get().config == {"base_url": url}
