"""The API's shared plumbing: hostile bodies never cause a 500, the schema validates and hides secrets."""

import json
from io import StringIO

import pytest
from django.core.management import call_command
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from connections.models import Connection
from core.renderers import ContentNegotiation, JSONRenderer
from tests.api_support import api, assert_no_secret, operator, make_user  # noqa: F401 - fixtures
from tests.conftest import PLANTED_KEY

pytestmark = pytest.mark.django_db

CONNECTIONS = "/api/v1/connections/"


def send(client, method: str, path: str, raw: bytes | str, content_type: str = "application/json"):
    return getattr(client, method)(path, data=raw, content_type=content_type)


@pytest.mark.parametrize("raw", [
    "{", "[1, 2", "{'single': 'quotes'}", '{"name": NaN}', '{"name": Infinity}', "\x00",
    '{1: "number key"}', '{"name": "\\ud800"}', '{"secrets": {"api_key": "\\udfff"}}', "[" * 100000 + "]" * 100000,
    b"\xff\xfe\xfa", "null", "42", '"a string"', "[]", '[{"name": "x"}]', "true",
])
@pytest.mark.parametrize("method, path", [("post", CONNECTIONS), ("patch", CONNECTIONS + "openai-prod/"),
                                          ("put", CONNECTIONS + "openai-prod/"), ("post", "/api/v1/endpoints/")])
def test_malformed_bodies_get_400_never_500(api, make_connection, raw, method, path):
    make_connection()

    response = send(api, method, path, raw)

    assert response.status_code == 400, response.content[:300]
    assert response.json()
    assert Connection.objects.get().get_secrets() == {"api_key": PLANTED_KEY}


def test_an_empty_patch_body_changes_nothing(api, make_connection):
    make_connection()

    assert send(api, "patch", CONNECTIONS + "openai-prod/", "").status_code == 200


def test_a_huge_body_gets_413(api):
    raw = json.dumps({"name": "big", "description": "x" * (2 * 1024 * 1024)})

    response = send(api, "post", CONNECTIONS, raw)

    assert response.status_code == 413
    assert not Connection.objects.exists()


def test_other_content_types_get_415(api):
    response = send(api, "post", CONNECTIONS, "name=x&provider=openai", "application/x-www-form-urlencoded")

    assert response.status_code == 415


def test_non_ascii_everywhere_is_a_clean_400(api):
    body = {"name": "connexión-ü", "provider": "ópenai", "auth_method": "ключ", "secrets": {"ключ": "値"},
            "config": {"région": "東京"}, "description": "Ünïcode is fine here 🎉"}

    response = api.post(CONNECTIONS, body, format="json")

    assert response.status_code == 400
    assert set(response.json()) == {"name", "provider"}


def test_a_parse_error_does_not_echo_the_body(api):
    response = send(api, "post", CONNECTIONS, '{"secrets": {"api_key": "' + PLANTED_KEY + '"}, oops}')

    assert response.status_code == 400
    assert_no_secret(response)


# --- Schema and docs ----------------------------------------------------------------------------------------


def test_the_schema_validates_without_warnings():
    out = StringIO()

    call_command("spectacular", "--validate", "--fail-on-warn", "--format", "openapi-json", stdout=out,
                 stderr=StringIO())

    schema = json.loads(out.getvalue())
    components = schema["components"]["schemas"]
    assert components["ConnectionRequest"]["properties"]["secrets"]["writeOnly"] is True
    assert components["PatchedConnectionRequest"]["properties"]["secrets"]["writeOnly"] is True
    assert components["Connection"]["properties"]["secrets"]["readOnly"] is True
    assert schema["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": schema["components"]["securitySchemes"]["bearerAuth"][
            "description"]}
    assert "/api/v1/connections/{name}/history/" in schema["paths"]
    assert "/api/v1/connections/{name}/test/" in schema["paths"]
    # The gateway's routes are documented too (gateway/schema.py), and every API operation its error answers.
    for path in ("/gateway/v1/chat/completions", "/gateway/v1/embeddings", "/gateway/v1/models",
                 "/gateway/{endpoint}/invocations"):
        assert schema["paths"][path], path
    assert {"401", "403", "404", "409"} <= set(schema["paths"]["/api/v1/connections/{name}/"]["delete"]["responses"])


def test_the_schema_and_docs_are_served_with_local_assets(api, make_connection):
    make_connection()

    schema = api.get("/api/v1/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    docs = api.get("/api/v1/docs/")
    script = api.get("/api/v1/docs/?script=")

    assert schema.status_code == 200 and b"/api/v1/connections/" in schema.content
    assert_no_secret(schema)
    assert docs.status_code == 200
    page = docs.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in page
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    assert "<script>" not in page  # the start-up script is a separate file (Content-Security-Policy)
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")


@pytest.mark.parametrize("path", [CONNECTIONS, CONNECTIONS + "openai-prod/", CONNECTIONS + "openai-prod/history/",
                                  "/api/v1/endpoints/", "/api/v1/audit/", "/api/v1/providers/", "/api/v1/"])
def test_head_and_options_work_and_leak_nothing(api, make_connection, path):
    make_connection()

    for method in ("head", "options"):
        response = getattr(api, method)(path)
        assert response.status_code == 200, (method, path)
        assert_no_secret(response)


def test_a_missing_trailing_slash_is_not_an_error(api):
    assert api.get("/api/v1/connections").status_code == 301
    assert api.post("/api/v1/connections", {}, format="json").status_code == 301


ACCEPTS = [None, "*/*", "application/json", "application/json; indent=2", "text/html", "*/*;q=0.8", "application/*",
           "application/json, */*", "text/html, */*", " */*", "", "nothing/known"]


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("query", ["", "?format=json", "?format=api", "?format=csv"])
@pytest.mark.parametrize("renderer_classes", [[JSONRenderer], [JSONRenderer, BrowsableAPIRenderer]],
                         ids=["json", "json+browsable"])
def test_the_negotiation_picks_what_drfs_picks(accept, query, renderer_classes):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/v1/connections/" + query, **headers))

    def answer(negotiation):
        try:
            renderer, media_type = negotiation.select_renderer(request, [kind() for kind in renderer_classes])
        except Exception as error:  # noqa: BLE001 - the refusal is part of the answer
            return type(error)
        return type(renderer), media_type

    assert answer(ContentNegotiation()) == answer(DefaultContentNegotiation())


@pytest.mark.parametrize("path", [CONNECTIONS, "/api/v1/endpoints/", CONNECTIONS + "?page_size=2&page=2"])
def test_a_list_answers_alike_whatever_accept_asks(api, make_connection, path):
    """No Accept header and `*/*` are answered without parsing the header: the bytes and every header are the
    ones DRF's negotiation gives for `application/json`."""
    for name in ("c-1", "c-2", "c-3"):
        make_connection(name=name)
    answers = []
    for accept in (None, "*/*", "application/json", "application/json, */*;q=0.5"):
        response = api.get(path, **({} if accept is None else {"HTTP_ACCEPT": accept}))
        assert response.status_code == 200
        answers.append((response.content, sorted(response.items())))
    assert all(answer == answers[0] for answer in answers)
    assert dict(answers[0][1])["Content-Type"] == "application/json"
