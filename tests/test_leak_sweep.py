"""The leak sweep: a distinctive secret planted in every secret field of every provider's auth methods is looked
for at every exit, and found at none.

Each planted value carries the same 16-character marker (`CORE`) between characters that URL-encoding and
JSON-escaping change, so one search finds the value as is, URL-encoded, JSON-escaped, or any 12-character
piece of it; base64 is found through the encodings of the marker at each of the three byte alignments.
The exits: the settings pages and fragments, the admin, every API response and the OpenAPI schema, command
output, everything logged at DEBUG (as the configured handler prints it, and as caplog records it), error
pages with DEBUG off, gateway and Test answers to a provider that echoes what it was sent, audit rows,
the raw database (every column through a cursor; on SQLite also the database's byte image), and what usage
tracking recorded of the gateway's calls (its rows, the Usage tab, the usage API as JSON and CSV, /metrics).
"""

import base64
import logging
import re
from io import StringIO
from urllib.parse import quote

import pytest
from django.contrib.admin.models import LogEntry
from django.core.management import call_command
from django.forms.models import model_to_dict
from django.db import connection as db_connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import include, path
from rest_framework.test import APIClient

from core.redaction import RedactSecrets
from core.redaction import redact_log_text as redact
from providers import catalogue
from audit.models import AuditEntry
from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Destination, Endpoint
from providers import upstream
from providers.oauth import TOKENS
from tests.fakes.google_token import make_service_account
from tests.fakes.server import FakeServer, RecordedRequest, Reply
from tokens.models import ApiToken
from usage.models import UsageHour, UsageRecord
from usage.recorder import RECORDER

pytestmark = pytest.mark.django_db

CORE = "Lk7Qz9Xw3VmP2sRt"
# Characters around the marker that every encoding changes, so an encoded leak differs from the plain one.
PLANTED_TEMPLATE = 'sk-{tag}-' + CORE + '/+=&%"<>\\-end'
GUID = "00000000-0000-4000-8000-00000000a001"
CONFIG_VALUES = {
    "api_version": "2024-10-21", "tenant_id": GUID, "client_id": GUID, "project_id": "my-project-123",
    "location": "us-central1", "region": "us-east-1", "organization": "org-sweep",
}


def planted(tag: str) -> str:
    return PLANTED_TEMPLATE.format(tag=tag)


def marker_base64_forms() -> set[str]:
    """The base64 characters that depend only on the marker's bytes, at each alignment, in both alphabets."""
    forms = set()
    for offset in range(3):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(b"\0" * offset + CORE.encode()).decode()
            first_group, end_group = -(-offset // 3), (offset + len(CORE)) // 3
            forms.add(encoded[4 * first_group: 4 * end_group])
    return forms


# 12-character pieces of the marker (which also stands for its URL-encoded and JSON-escaped forms), and base64.
NEEDLES = {f"piece {i}": CORE[i:i + 12] for i in range(len(CORE) - 11)} | {
    f"base64 {form}": form for form in marker_base64_forms()
}
NEEDLE_PATTERN = re.compile("|".join(re.escape(n) for n in NEEDLES.values()), re.IGNORECASE)


def test_the_needles_find_every_encoding_of_a_planted_value():
    """The sweep can only be trusted if it would see a leak: every form of a value, and a piece of it."""
    import json

    value = planted("self-test")
    for form in [value, quote(value, safe=""), quote(value), json.dumps(value), repr(value),
                 value[8:30], value.lower(), base64.b64encode(value.encode()).decode(),
                 base64.b64encode(f"user:{value}".encode()).decode(), base64.urlsafe_b64encode(b"xy" + value.encode())
                 .decode(), json.dumps({"private_key": f"{value}\n-----BEGIN PRIVATE KEY-----"})]:
        assert NEEDLE_PATTERN.search(form), form
    assert not NEEDLE_PATTERN.search(f"sk-...{value[-4:]} {value[:3]}")  # the mask is not a leak


class Sweep:
    """Counts the places looked at and remembers each place where a planted secret turned up."""

    def __init__(self):
        self.places = 0
        self.found: list[str] = []

    def check(self, place: str, content: object) -> None:
        self.places += 1
        if isinstance(content, bytes):
            content = content.decode("latin-1")
        text = str(content)
        match = NEEDLE_PATTERN.search(text)
        if match:
            start = max(0, match.start() - 80)
            self.found.append(f"{place}: …{text[start:match.end() + 40]!r}…")

    def response(self, place: str, response) -> None:
        """Body (also of a stream) and headers of a Django response."""
        body = b"".join(response.streaming_content) if response.streaming else response.content
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.check(f"{place} [{response.status_code}]", body.decode("utf-8", "replace") + "\n" + headers)

    def assert_clean(self, what: str) -> None:
        print(f"\nleak sweep ({what}): {self.places} places checked, {len(self.found)} leaks")
        assert not self.found, "planted secret found in:\n" + "\n".join(self.found[:30])


# --- A provider that echoes everything it is sent, in every encoding --------------------------------------


class EchoProvider:
    """Answers every request (model calls and token requests alike) with an error quoting the whole request:
    method, URL, headers and body, as is, base64'd and URL-encoded. The worst provider there could be."""

    def __init__(self):
        self.status = 401
        self.server = FakeServer(self.handle)

    @property
    def url(self) -> str:
        return self.server.url

    def handle(self, request: RecordedRequest) -> Reply:
        everything = f"{request.method} {request.target} {request.headers} {request.body.decode('latin-1')}"
        echo = (f"{everything} b64={base64.b64encode(everything.encode()).decode()} "
                f"url={quote(everything, safe='')}")
        document = {"error": {"message": echo, "type": "invalid_request_error", "code": "invalid_api_key"},
                    "message": echo, "error_description": echo}
        return Reply.json(document, self.status)

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def echo(settings):
    provider = EchoProvider()
    settings.AZURE_AUTHORITY_HOST = provider.url  # Entra ID's token requests go to the echo too
    yield provider
    provider.stop()
    TOKENS.clear()


# --- Every secret field of every auth method, planted ------------------------------------------------------


def methods_with_secrets() -> list[tuple[catalogue.Provider, catalogue.AuthMethod]]:
    return [(p, m) for p in catalogue.PROVIDER_LIST for m in p.auth_methods if m.secret_fields]


def secrets_for(provider: catalogue.Provider, method: catalogue.AuthMethod, token_uri: str) -> dict:
    values = {}
    for spec in method.secret_fields:
        tag = f"{provider.id}-{method.id}-{spec.name}"
        if spec.name == "service_account_json":
            info = make_service_account(token_uri, private_key_id="kid-sweep-0001")
            # Text before the PEM block is allowed (RFC 7468), so the key still signs: the token request is made.
            info["private_key"] = f"{planted(tag)}\n{info['private_key']}"
            values[spec.name] = info
        else:
            values[spec.name] = planted(tag)
    return values


def config_for(method: catalogue.AuthMethod, address: str) -> dict:
    return {
        spec.name: address if spec.name in catalogue.ADDRESS_FIELDS else CONFIG_VALUES.get(spec.name, spec.default)
        for spec in method.config_fields
    }


@pytest.fixture
def planted_connections(echo, admin_user) -> list[Connection]:
    """One connection per auth method with secrets, each with an endpoint, all pointing at the echo provider."""
    made = []
    for provider, method in methods_with_secrets():
        connection = Connection(name=f"{provider.id}-{method.id}".replace("_", "-"), provider=provider.id,
                                auth_method=method.id, config=config_for(method, echo.url),
                                description="sweep")
        connection.update_secrets(secrets_for(provider, method, f"{echo.url}/token"))
        connection.full_clean()
        connection_save(connection=connection, actor=admin_user)
        # An edit (field names audited) and a key rotation, so history and audit rows exist for both.
        connection.description = "sweep, edited"
        connection_save(connection=connection, actor=admin_user)
        Endpoint.objects.create(name=f"e-{connection.name}", task="chat").destinations.create(
            connection=connection, model="m", weight=100)
        made.append(connection)
    return made


@pytest.fixture
def debug_logs(caplog):
    """Everything logged at DEBUG (noisy libraries included), as the configured handler prints it and as caplog
    records it."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if any(isinstance(f, RedactSecrets) for f in h.filters))
    buffer = StringIO()
    previous_stream = handler.setStream(buffer)
    noisy = {name: logging.getLogger(name).level for name in ("httpx", "httpcore", "botocore", "django", "urllib3")}
    caplog.set_level(logging.DEBUG)
    for name in noisy:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield lambda: buffer.getvalue() + "\n" + caplog.text
    handler.setStream(previous_stream)
    for name, level in noisy.items():
        logging.getLogger(name).setLevel(level)


def api_client(user) -> APIClient:
    _, token = ApiToken.issue(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


# --- The sweep ----------------------------------------------------------------------------------------------


def test_pages_admin_api_schema_commands_and_logs_carry_no_planted_secret(
    planted_connections, admin_user, debug_logs, echo
):
    sweep = Sweep()
    site = Client()
    site.force_login(admin_user)
    api = api_client(admin_user)
    names = [c.name for c in planted_connections]

    # Settings pages and fragments.
    for url in ["/settings/connections/", "/settings/connections/?page=2", "/settings/connections/new/",
                "/settings/audit/", "/settings/tokens/", "/settings/endpoints/", "/settings/endpoints/new/"]:
        sweep.response(f"page {url}", site.get(url))
    for provider, method in methods_with_secrets():
        url = f"/settings/connections/method-fields/?provider={provider.id}&auth_method={method.id}"
        sweep.response(f"fragment {url}", site.get(url))
    for connection in planted_connections:
        name = connection.name
        for url in [f"/settings/connections/{name}/edit/", f"/settings/connections/{name}/delete/",
                    f"/settings/connections/{name}/history/", f"/settings/endpoints/e-{name}/edit/",
                    f"/settings/endpoints/e-{name}/delete/",
                    f"/settings/connections/method-fields/?provider={connection.provider}"
                    f"&auth_method={connection.auth_method}&connection={name}"]:
            sweep.response(f"page {url}", site.get(url))
        # A re-rendered edit form (invalid name) after a blank secret: the stored value is not put back.
        form = {"name": "bad name!", "provider": connection.provider, "auth_method": connection.auth_method,
                "description": "x",
                **{f"config.{k}": v for k, v in connection.config.items()}}
        sweep.response(f"invalid edit of {name}", site.post(f"/settings/connections/{name}/edit/", form))
        # The Test button, whose provider echoes the credentials it was sent.
        sweep.response(f"Test button of {name}",
                       site.post(f"/settings/connections/{name}/test/", follow=True))
        # Test on the edit form: blank secrets (the stored ones are sent and echoed), then typed ones; the page
        # and the form script's fragment; and Save asked to verify first, refused by the echoing provider.
        valid = {**form, "name": name, "environment": connection.environment, "key_max_age_days": ""}
        typed_secrets = {f"secrets.{spec.name}": planted(f"typed-{name}-{spec.name}")
                         for spec in connection.auth_method_spec.secret_fields}
        test_url = f"/settings/connections/{name}/edit/test-typed/"
        for label, sent in (("stored", valid), ("typed", {**valid, **typed_secrets})):
            tested = site.post(test_url, sent)
            if label == "stored":
                assert "Test failed" in tested.content.decode(), name  # the echo was asked, and answered
            sweep.response(f"Test on the edit form of {name} ({label})", tested)
            sweep.response(f"Test on the edit form of {name} ({label}, script)",
                           site.post(test_url, sent, HTTP_X_REQUESTED_WITH="fetch"))
            sweep.response(f"Save with verify of {name} ({label})", site.post(
                f"/settings/connections/{name}/edit/", {**sent, "verify_credentials": "on"}))
        # The API's Test with a body over the stored connection, and a PATCH asked to verify first.
        field = connection.auth_method_spec.secret_fields[0].name
        api_typed = {"secrets": {field: planted(f"api-typed-{name}")}}
        sweep.response(f"API test of {name} with stored secrets and a body",
                       api.post(f"/api/v1/connections/{name}/test/", {"description": "x"}, format="json"))
        sweep.response(f"API test of {name} with a typed secret",
                       api.post(f"/api/v1/connections/{name}/test/", api_typed, format="json"))
        sweep.response(f"API PATCH with verify of {name}",
                       api.patch(f"/api/v1/connections/{name}/?verify=true", api_typed, format="json"))
        sweep.response(f"API test of a new connection like {name}", api.post("/api/v1/connection-test/", {
            "provider": connection.provider, "auth_method": connection.auth_method, "config": connection.config,
            "secrets": {spec.name: planted(f"api-new-{name}-{spec.name}")
                        for spec in connection.auth_method_spec.secret_fields}}, format="json"))
    # A create form re-rendered with errors does not echo a secret just typed in.
    typed = planted("typed-into-a-form")
    sweep.response("invalid create form", site.post("/settings/connections/new/", {
        "name": "bad name!", "provider": "openai", "auth_method": "api_key", 
        "secrets.api_key": typed, "config.organization": "not an org!!"}))
    # Test on the create form (the echoing provider answers), with the form's checks failing, and Save asked to
    # verify first.
    create_form = {"name": "typed-new", "provider": "openai", "auth_method": "api_key", "selection": "openai/api_key",
                   "secrets.api_key": typed, "config.base_url": f"{echo.url}/v1", "environment": "production"}
    for label, sent in (("echoed", create_form), ("refused", {**create_form, "config.organization": "not an org!!"})):
        sweep.response(f"Test on the create form ({label})", site.post("/settings/connections/new/test-typed/", sent))
        sweep.response(f"Test on the create form ({label}, script)", site.post(
            "/settings/connections/new/test-typed/", sent, HTTP_X_REQUESTED_WITH="fetch"))
        sweep.response(f"Create with verify ({label})", site.post("/settings/connections/new/",
                                                                  {**sent, "verify_credentials": "on"}))

    # The typed credentials did reach the provider that echoes them: those answers had them to leak.
    carried_typed = [r for r in echo.server.requests if "typed-" in f"{r.target} {r.headers} {r.body!r}"]
    assert len(carried_typed) >= len(planted_connections)

    # The admin.
    # The admin's search never matches ciphertext or secrets (it echoes the typed query, which is not a leak).
    searched = site.get(f"/admin/connections/connection/?q={CORE}")
    assert "0 connections" in searched.content.decode()
    sweep.check("admin search for the marker", re.sub(rf"(q=|q%3D|value=\"){CORE}", "", searched.content.decode()))
    for url in ["/admin/", "/admin/connections/connection/",
                "/admin/connections/auditentry/", "/admin/endpoints/endpoint/", "/admin/tokens/apitoken/",
                "/admin/admin/logentry/"]:
        sweep.response(f"admin {url}", site.get(url))
    for connection in planted_connections:
        for page in ("change", "delete", "history"):
            url = f"/admin/connections/connection/{connection.pk}/{page}/"
            sweep.response(f"admin {url}", site.get(url))
    for entry in AuditEntry.objects.all()[:10]:
        sweep.response(f"admin audit entry {entry.pk}", site.get(f"/admin/connections/auditentry/{entry.pk}/change/"))
    for endpoint in Endpoint.objects.all():  # the destinations inline names each connection
        sweep.response(f"admin endpoint {endpoint.name}", site.get(f"/admin/endpoints/endpoint/{endpoint.pk}/change/"))

    # The API, the schema and its docs page.
    for url in ["/api/v1/connections/", "/api/v1/connections/?page_size=500", "/api/v1/audit/?page_size=500",
                "/api/v1/providers/", "/api/v1/endpoints/?page_size=500", "/api/v1/schema/",
                "/api/v1/schema/?format=json", "/api/v1/docs/", f"/api/v1/connections/?search={CORE}"]:
        sweep.response(f"API GET {url}", api.get(url))
    for name in names:
        for url in [f"/api/v1/connections/{name}/", f"/api/v1/connections/{name}/history/",
                    f"/api/v1/endpoints/e-{name}/"]:
            sweep.response(f"API GET {url}", api.get(url))
        sweep.response(f"API test of {name}", api.post(f"/api/v1/connections/{name}/test/"))
        sweep.response(f"API PATCH of {name}", api.patch(f"/api/v1/connections/{name}/",
                                                        {"description": "patched"}, format="json"))
    # Writes that fail validation do not echo the secret they carried.
    sweep.response("API invalid create", api.post("/api/v1/connections/", {
        "name": "bad name!", "provider": "openai", "auth_method": "api_key", "secrets": {"api_key": typed,
                                                                                      "nope": typed}},
        format="json"))
    sweep.response("API create with verify", api.post("/api/v1/connections/?verify=true", {
        "name": "api-verified", "provider": "openai", "auth_method": "api_key", "secrets": {"api_key": typed},
        "config": {"base_url": f"{echo.url}/v1"}}, format="json"))
    sweep.response("API invalid test of a new connection", api.post("/api/v1/connection-test/", {
        "provider": "openai", "auth_method": "api_key", "secrets": {"api_key": typed, "nope": typed},
        "config": {"organization": typed}}, format="json"))
    sweep.response("API create", api.post("/api/v1/connections/", {
        "name": "api-made", "provider": "anthropic", "auth_method": "api_key", "secrets": {"api_key": typed}},
        format="json"))
    sweep.response("API broken JSON with a secret", api.generic(
        "POST", "/api/v1/connections/", f'{{"secrets": {{"api_key": "{CORE}', content_type="application/json"))

    # Endpoints over several connections: a split with a fallback, and a refused set of destinations.
    chat_names = [c.name for c in planted_connections if "chat" in catalogue.PROVIDERS[c.provider].tasks][:3]
    split = [{"connection": chat_names[0], "model": "m", "weight": 60},
             {"connection": chat_names[1], "model": "m", "weight": 40},
             {"connection": chat_names[2], "model": "m", "role": "fallback"}]
    sweep.response("API create of a split", api.post("/api/v1/endpoints/", {
        "name": "split", "task": "chat", "destinations": split}, format="json"))
    sweep.response("API split read", api.get("/api/v1/endpoints/split/"))
    sweep.response("API invalid destinations", api.post("/api/v1/endpoints/", {
        "name": "split-bad", "task": "chat", "destinations": split[:1] + [{"connection": typed, "model": typed}]},
        format="json"))
    sweep.response("page of the split", site.get("/settings/endpoints/split/edit/"))
    for destination in Destination.objects.select_related("connection"):
        sweep.check(f"repr of destination {destination.pk}", f"{destination!r} {destination}")

    # Commands.
    out = StringIO()
    call_command("list_connections", stdout=out, stderr=out)
    sweep.check("list_connections", out.getvalue())
    for name in names[:4]:
        out = StringIO()
        field = Connection.objects.get(name=name).auth_method_spec.secret_fields[0].name
        call_command("rotate_connection_key", name, "--field", field, stdin=StringIO(planted(f"rotated-{name}")),
                     stdout=out, stderr=out)
        sweep.check(f"rotate_connection_key {name}", out.getvalue())
    out = StringIO()
    call_command("rotate_encryption_key", "--check", stdout=out, stderr=out)
    sweep.check("rotate_encryption_key --check", out.getvalue())

    # Reprs, and the audit rows (fields changed, never values).
    for connection in Connection.objects.all():
        sweep.check(f"repr of {connection.name}", f"{connection!r} {connection} {connection.masked_secrets()}"
                    f" {connection.credentials_display}")
    for entry in AuditEntry.objects.all():
        sweep.check(f"audit row {entry.pk}", f"{entry!r} {entry} {entry.fields} {entry.action}")
    for entry in LogEntry.objects.all():
        sweep.check(f"admin log entry {entry.pk}", f"{entry.change_message} {entry.object_repr}")

    sweep.check("logs at DEBUG", debug_logs())
    sweep.assert_clean("pages, admin, API, schema, commands, audit rows, logs")
    assert sweep.places >= 300


def test_gateway_errors_from_a_provider_echoing_the_credentials_carry_no_secret(planted_connections, admin_user,
                                                                                 debug_logs, echo, site):
    sweep = Sweep()
    client = Client()
    _, token = ApiToken.issue(user=admin_user)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    chat = {"messages": [{"role": "user", "content": "hi"}]}
    for status in (400, 401, 403, 429, 500):
        echo.status = status
        TOKENS.clear()
        for connection in planted_connections:
            for stream in (False, True):
                response = site.post(f"/gateway/e-{connection.name}/invocations", {**chat, "stream": stream},
                                       content_type="application/json", **auth)
                assert response.status_code >= 400, connection.name
                sweep.response(f"gateway {connection.name} (provider answered {status}, stream={stream})", response)
            response = site.post("/gateway/v1/chat/completions", {**chat, "model": f"e-{connection.name}"},
                                   content_type="application/json", **auth)
            sweep.response(f"gateway /v1/chat/completions {connection.name} ({status})", response)
            # The native pass-through routes (refused for other providers' endpoints, answered otherwise).
            for path, body in (("/gateway/anthropic/v1/messages", {**chat, "max_tokens": 10}),
                               ("/gateway/v1/responses", {"input": "hi"})):
                for stream in (False, True):
                    response = site.post(path, {**body, "model": f"e-{connection.name}", "stream": stream},
                                         content_type="application/json", **auth)
                    assert response.status_code >= 400, (path, connection.name)
                    sweep.response(f"gateway {path} {connection.name} ({status}, stream={stream})", response)
    # The provider did receive (and so echoed) the credentials: the answers above had them to leak.
    echoed = [r for r in echo.server.requests if NEEDLE_PATTERN.search(f"{r.target} {r.headers} {r.body!r}")]
    assert len(echoed) >= len(planted_connections) * 10

    # What usage tracking recorded of those calls: its rows, the Usage tab, the API (JSON and CSV), /metrics.
    RECORDER.flush()
    assert UsageRecord.objects.count() >= len(planted_connections) * 15
    for record in UsageRecord.objects.all():
        sweep.check(f"usage record {record.pk}", f"{record!r} {record} {model_to_dict(record)}")
    for hour in UsageHour.objects.all():
        sweep.check(f"usage hour {hour.pk}", f"{hour!r} {model_to_dict(hour)}")
    pages = Client()
    pages.force_login(admin_user)
    api = api_client(admin_user)
    for period in ("24h", "7d", "30d"):
        sweep.response(f"Usage tab {period}", pages.get("/settings/usage/", {"period": period}))
    for connection in planted_connections:
        sweep.response(f"Usage tab of {connection.name}", pages.get("/settings/usage/", {"connection": connection.pk}))
    for by in ("endpoint", "connection", "token", "model"):
        for output in ("json", "csv"):
            sweep.response(f"API usage by {by} ({output})", api.get("/api/v1/usage/", {"by": by, "format": output}))
    sweep.response("metrics", api.get("/metrics"))
    for url in ["/admin/usage/usagerecord/", "/admin/usage/price/", "/admin/usage/price/add/",
                f"/admin/usage/usagerecord/{UsageRecord.objects.first().pk}/change/"]:
        sweep.response(f"admin {url}", pages.get(url))
    sweep.check("gateway logs at DEBUG", debug_logs())
    sweep.assert_clean("gateway error bodies, usage records, Usage tab, usage API, metrics")


# A view that fails while handling a connection, with the secret in its exception (the worst case).
def explode(request: HttpRequest, name: str) -> HttpResponse:
    secrets = Connection.objects.get(name=name).get_secrets()
    raise RuntimeError(f"could not use the credentials {secrets}")


urlpatterns = [path("sweep/explode/<str:name>/", explode), path("", include("config.urls"))]


def test_error_pages_with_debug_off_and_their_logs_carry_no_secret(planted_connections, admin_user, debug_logs,
                                                                   settings):
    settings.DEBUG = False
    settings.ROOT_URLCONF = __name__
    sweep = Sweep()
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)
    api = api_client(admin_user)
    for connection in planted_connections:
        sweep.response(f"500 while handling {connection.name}", client.get(f"/sweep/explode/{connection.name}/"))
    sweep.response("404 page", client.get("/settings/connections/no-such-one/edit/"))
    sweep.response("API 404", api.get("/api/v1/connections/no-such-one/"))
    # A corrupted row: ciphertext that no key decrypts, and config that is not an object.
    with db_connection.cursor() as cursor:
        cursor.execute("UPDATE connections_connection SET secrets = %s WHERE name = %s",
                       ["gAAAAAB-not-a-token", planted_connections[0].name])
        cursor.execute("UPDATE connections_connection SET config = %s WHERE name = %s",
                       ['"a string"', planted_connections[1].name])
    for name in (planted_connections[0].name, planted_connections[1].name):
        for url in ["/settings/connections/", f"/settings/connections/{name}/edit/",
                    f"/api/v1/connections/{name}/", f"/admin/connections/connection/"
                    f"{Connection.objects.get(name=name).pk}/change/"]:
            response = (api if url.startswith("/api/") else client).get(url)
            sweep.response(f"corrupted row: {url}", response)
    logged = debug_logs()
    assert "could not use the credentials" in logged  # the 500s were logged, with their traceback
    sweep.check("error logs", logged)
    sweep.assert_clean("error pages with DEBUG off")


def test_the_database_holds_no_planted_secret_in_any_column_or_byte(planted_connections, admin_user):
    sweep = Sweep()
    site = Client()
    site.force_login(admin_user)
    site.post(f"/settings/connections/{planted_connections[0].name}/test/")  # a session with messages
    with db_connection.cursor() as cursor:
        for table in db_connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {db_connection.ops.quote_name(table)}")
            for number, row in enumerate(cursor.fetchall()):
                sweep.check(f"table {table} row {number}", " | ".join(
                    bytes(value).decode("latin-1") if isinstance(value, (bytes, memoryview)) else str(value)
                    for value in row))
    if db_connection.vendor == "sqlite":
        db_connection.ensure_connection()
        # The database's bytes exactly as a file-based database would hold them (free pages included).
        sweep.check("SQLite database bytes", db_connection.connection.serialize())
    sweep.assert_clean("database")


# --- The logging filter -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["Authorization", "api-key", "x-api-key", "x-goog-api-key"])
def test_the_log_filter_redacts_credential_headers(header):
    value = planted("header")
    assert CORE not in redact(f"{header}: {value}")
    assert CORE not in redact(f"{{'{header}': '{value}'}}")
    assert CORE not in redact(f"headers=[(b'{header.lower()}', b'{value}')]")


def test_the_log_filter_redacts_stored_secrets_in_use_without_a_query(make_connection, django_assert_num_queries):
    secret = planted("stored")
    connection = make_connection("stored", provider="anthropic", secrets={"api_key": secret})
    connection = Connection.objects.get(pk=connection.pk)
    connection.get_secrets()  # what the gateway does before a call
    text = (f"provider said: {secret} / {quote(secret, safe='')} / "
            f"{base64.b64encode(('user:' + secret).encode()).decode()}")
    with django_assert_num_queries(0):
        redacted = redact(text)
    assert not NEEDLE_PATTERN.search(redacted), redacted
    assert redacted.startswith("provider said: [redacted]")
