"""Headers on every response, HTTPS or not: a CSP that allows no inline script, no framing, no sniffing."""

import re
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import PLANTED_KEY

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_DIRECTIVES = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'self'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}


def directives(header: str) -> dict[str, str]:
    return {name: value for name, _, value in (part.strip().partition(" ") for part in header.split(";"))}


@pytest.fixture
def signed_in(client, admin_user, make_connection):
    make_connection("openai-prod")
    client.force_login(admin_user)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/accounts/login/",
        "/",  # a redirect
        "/settings/connections/",
        "/settings/connections/new/",
        "/settings/connections/openai-prod/edit/",
        "/settings/tokens/",
        "/admin/connections/connection/",
        "/admin/connections/connection/add/",
        "/api/v1/connections/",
        "/api/v1/docs/",
        "/api/v1/docs/?script=",
        "/no-such-page/",  # a 404
        "/gateway/v1/models",  # a 401: no Bearer token (the gateway's middleware serves it, gateway/middleware.py)
        "/gateway/no-such-route",  # a 404 under the gateway's prefix
    ],
)
def test_every_response_carries_the_security_headers(signed_in, path):
    response = signed_in.get(path)

    policy = directives(response["Content-Security-Policy"])
    assert {name: policy.get(name) for name in EXPECTED_DIRECTIVES} == EXPECTED_DIRECTIVES
    assert "unsafe-inline" not in response["Content-Security-Policy"]
    assert "unsafe-eval" not in response["Content-Security-Policy"]
    # Swagger UI's icons are `data:` images in its stylesheet: allowed on the docs page only.
    assert policy["img-src"] == ("'self' data:" if path.startswith("/api/v1/docs/") else "'self'")
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


def test_a_throttled_login_carries_them_too(client, django_user_model):
    django_user_model.objects.create_user("alice", password="alice-password-123")
    for _ in range(11):
        response = client.post("/accounts/login/", {"username": "alice", "password": "wrong"}, REMOTE_ADDR="10.9.8.7")

    assert response.status_code == 429
    assert "script-src 'self'" in response["Content-Security-Policy"] and response["X-Frame-Options"] == "DENY"


def test_the_api_speaks_json_only_when_debug_is_off(signed_in):
    assert settings.DEBUG is False
    response = signed_in.get("/api/v1/connections/", HTTP_ACCEPT="text/html")

    assert response.status_code == 406  # no browsable HTML API in production (tests/config/test_settings.py: DEBUG)
    assert PLANTED_KEY not in response.text


def test_the_api_docs_page_needs_no_inline_style_or_script(signed_in):
    page = signed_in.get("/api/v1/docs/").text

    assert "<style" not in page
    assert all(tag_has_src(tag) for tag in re.findall(r"<script\b[^>]*>", page))
    assert "/static/api/swagger-ui-page.css" in page and "?script=" in page


def tag_has_src(tag: str) -> bool:
    return re.search(r"\ssrc=", tag) is not None


TEMPLATE_FOLDERS = [ROOT / "templates", *ROOT.glob("*/templates")]
TEMPLATES = sorted(str(path.relative_to(ROOT)) for folder in TEMPLATE_FOLDERS for path in folder.rglob("*.html"))


@pytest.mark.parametrize("template", TEMPLATES)
def test_our_templates_have_no_inline_script_style_or_handler(template):
    """The CSP would block them: behaviour lives in static .js files, looks in static .css files."""
    text = (ROOT / template).read_text()

    assert not re.search(r"\sstyle\s*=", text)
    assert "<style" not in text
    assert not re.search(r"\son[a-z]+\s*=", text)  # onclick=, onchange=, …
    assert "javascript:" not in text
    assert all(tag_has_src(tag) for tag in re.findall(r"<script\b[^>]*>", text))
