"""A credential sent in a header must be one HTTP can send: printable ASCII. A key with a non-ASCII character, a
no-break space, a line break or a NUL is refused on every surface (page, API, admin, rotate_connection_key), with
a message that says what is wrong and where, and never shows the key. A key file (a JSON document) is parsed
instead: the newlines of its PEM are its own."""

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from audit.models import AuditEntry
from connections.models import Connection
from tests.api_support import bearer_client, make_user, operator  # noqa: F401 - fixtures
from tests.conftest import PLANTED_KEY
from tests.providers.catalogue_cases import SERVICE_ACCOUNT

pytestmark = pytest.mark.django_db

HEAD, TAIL = "sk-proj-Abc123Def456", "Ghi789Jkl012Mno345"
# (key, what the message calls the character, its position counted from 1)
BAD_KEYS = [
    (f"{HEAD}\u00a0{TAIL}", "a no-break space"),  # pasted from a web page
    (f"{HEAD}é{TAIL}", "a non-ASCII character"),
    (f"{HEAD}\u2019{TAIL}", "a non-ASCII character"),  # a typographic apostrophe
    (f"{HEAD}\u200b{TAIL}", "an invisible character"),  # a zero-width space
    (f"{HEAD}\r\nX-Injected: 1", "a line break"),
    (f"{HEAD}\n{TAIL}", "a line break"),
    (f"{HEAD}\x00{TAIL}", "a NUL character"),
    (f"{HEAD}\t{TAIL}", "a tab"),
    (f"{HEAD}\x7f{TAIL}", "a control character"),
]
IDS = ["nbsp", "e-acute", "apostrophe", "zero-width-space", "crlf", "lf", "nul", "tab", "del"]
POSITION = f"character {len(HEAD) + 1}"


def assert_refused_without_the_key(message: str, what: str, key: str, text: str = "", *, form: bool = False) -> None:
    if form and "\x00" in key:
        assert message == "Null characters are not allowed."  # Django's form fields refuse it first
    else:
        assert f"contains {what} ({POSITION})" in message, message
        assert "HTTP headers, which take printable ASCII characters only" in message
    for shown in (message, text):
        assert HEAD not in shown and TAIL not in shown and key not in shown


@pytest.mark.parametrize("key, what", BAD_KEYS, ids=IDS)
def test_the_api_refuses_it_on_create_and_on_rotation(key, what, operator, make_connection):
    api = bearer_client(operator)

    created = api.post("/api/v1/connections/", {"name": "new-key", "provider": "openai", "auth_method": "api_key",
                                                 "secrets": {"api_key": key}}, format="json")
    make_connection("openai-prod")
    rotated = api.patch("/api/v1/connections/openai-prod/", {"secrets": {"api_key": key}}, format="json")

    for response in (created, rotated):
        assert response.status_code == 400
        assert_refused_without_the_key(response.json()["secrets"]["api_key"][0], what, key, response.content.decode())
    assert list(Connection.objects.values_list("name", flat=True)) == ["openai-prod"]
    assert Connection.objects.get().get_secrets() == {"api_key": PLANTED_KEY}


@pytest.mark.parametrize("key, what", BAD_KEYS, ids=IDS)
def test_the_page_refuses_it(key, what, admin_client):
    response = admin_client.post("/settings/connections/new/", {
        "name": "new-key", "provider": "openai", "auth_method": "api_key", "selection": "openai/api_key",
        "secrets.api_key": key, "config.organization": "", "config.base_url": "", "description": "",
    })

    assert response.status_code == 200
    assert_refused_without_the_key(response.context["form"].errors["secrets.api_key"][0], what, key,
                                   response.content.decode(), form=True)
    assert not Connection.objects.exists() and not AuditEntry.objects.exists()


@pytest.mark.parametrize("key, what", BAD_KEYS, ids=IDS)
def test_the_admin_refuses_it(key, what, admin_client):
    response = admin_client.post(reverse("admin:connections_connection_add"), {
        "name": "new-key", "provider": "openai", "auth_method": "api_key", "selection": "openai/api_key",
        "secrets.api_key": key, "config.organization": "", "config.base_url": "", "description": "",
    })

    assert response.status_code == 200
    assert_refused_without_the_key(response.context["adminform"].form.errors["secrets.api_key"][0], what, key,
                                   response.content.decode(), form=True)
    assert not Connection.objects.exists()


@pytest.mark.parametrize("key, what", BAD_KEYS, ids=IDS)
def test_rotate_connection_key_refuses_it(key, what, make_connection):
    make_connection("openai-prod")
    out = StringIO()

    with pytest.raises(CommandError) as refused:
        call_command("rotate_connection_key", "openai-prod", stdin=StringIO(key), stdout=out, stderr=out)

    assert str(refused.value).startswith("Nothing changed:")
    assert_refused_without_the_key(str(refused.value), what, key, out.getvalue())
    assert Connection.objects.get().get_secrets() == {"api_key": PLANTED_KEY}


AWS = {"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE", "aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfi"}
AZURE_AD = {"endpoint_url": "https://r.openai.azure.com", "api_version": "2024-10-21",
            "tenant_id": "72f988bf-86f1-41af-91ab-2d7cd011db47", "client_id": "00000000-1111-2222-3333-444444444444"}


@pytest.mark.parametrize(
    "provider, method, secrets, field, config",
    [
        ("bedrock", "access_key", AWS, "aws_access_key_id", {"region": "us-east-1"}),
        ("bedrock", "access_key", AWS, "aws_secret_access_key", {"region": "us-east-1"}),
        ("bedrock", "access_key", AWS, "aws_session_token", {"region": "us-east-1"}),
        ("openai", "azure_ad", {}, "client_secret", AZURE_AD),
        ("databricks", "token", {}, "token", {"host": "https://dbc-1234.cloud.databricks.com"}),
    ],
)
def test_every_secret_field_but_a_key_file_has_the_rule(provider, method, secrets, field, config, operator):
    key = f"{HEAD}\u00a0{TAIL}"

    response = bearer_client(operator).post("/api/v1/connections/", {
        "name": "new-key", "provider": provider, "auth_method": method, "secrets": {**secrets, field: key},
        "config": config,
    }, format="json")

    assert response.status_code == 400
    assert list(response.json()) == ["secrets"] and list(response.json()["secrets"]) == [field]
    assert_refused_without_the_key(response.json()["secrets"][field][0], "a no-break space", key,
                                   response.content.decode())


def test_a_key_file_keeps_the_newlines_of_its_pem_and_its_own_layout(operator):
    pasted = json.dumps(SERVICE_ACCOUNT, indent=2)  # as the downloaded file is laid out: newlines and spaces
    assert "\n" in pasted and "\\n" in pasted

    response = bearer_client(operator).post("/api/v1/connections/", {
        "name": "vertex", "provider": "vertex_ai", "auth_method": "service_account",
        "secrets": {"service_account_json": pasted}, "config": {"project_id": "my-project-123"},
    }, format="json")

    assert response.status_code == 201, response.content
    stored = json.loads(Connection.objects.get().get_secrets()["service_account_json"])
    assert stored["private_key"] == SERVICE_ACCOUNT["private_key"]
