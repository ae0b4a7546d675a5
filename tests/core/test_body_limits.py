"""A body too large for its surface is a 413 in that surface's shape, before anything reads it: the API's JSON
`{"detail": ...}` (over 1 MiB, whatever its content type or authentication), a plain page elsewhere (over
Django's DATA_UPLOAD_MAX_MEMORY_SIZE). Never Django's HTML 400, never a traceback in the log."""

import logging

import pytest
from django.conf import settings

from connections.models import Connection
from core.redaction import RedactSecrets
from tests.api_support import api, make_user, operator  # noqa: F401 - fixtures

pytestmark = pytest.mark.django_db

OVER_THE_PAGE_LIMIT = settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 1


def api_limit() -> int:
    from core.body_limits import MAX_BODY_BYTES

    return MAX_BODY_BYTES


def body_of(size: int, content_type: str) -> bytes:
    if content_type == "application/json":
        return b'{"name": "big", "description": "' + b"x" * (size - 34) + b'"}'
    if content_type.startswith("multipart/"):
        return (b"--b\r\nContent-Disposition: form-data; name=\"description\"\r\n\r\n" + b"x" * size
                + b"\r\n--b--\r\n")
    return b"name=big&description=" + b"x" * size


@pytest.fixture
def console():
    """What the configured log handler prints."""
    from io import StringIO

    handler = next(h for h in logging.getLogger().handlers if any(isinstance(f, RedactSecrets) for f in h.filters))
    buffer = StringIO()
    previous = handler.setStream(buffer)
    yield buffer
    handler.setStream(previous)


@pytest.mark.parametrize("over", ["the-api-limit", "the-page-limit"])
@pytest.mark.parametrize("content_type", ["application/json", "application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=b", "text/plain"])
def test_the_api_answers_json_413(api, over, content_type, console):
    size = api_limit() + 1 if over == "the-api-limit" else OVER_THE_PAGE_LIMIT

    response = api.generic("POST", "/api/v1/connections/", body_of(size, content_type), content_type=content_type)

    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": f"Request body too large: at most {api_limit()} bytes."}
    assert not Connection.objects.exists()
    assert "Traceback" not in console.getvalue()
    logged = [line for line in console.getvalue().splitlines() if "Too Large" in line]
    assert len(logged) == 1 and logged[0].endswith("Too Large: /api/v1/connections/")  # one line, as any 4xx


def test_the_api_answers_json_413_to_a_signed_in_browser_too(admin_client, console):
    response = admin_client.generic("PATCH", "/api/v1/connections/x/", body_of(OVER_THE_PAGE_LIMIT, "application/json"),
                                    content_type="application/json")

    assert response.status_code == 413 and response.json()["detail"].startswith("Request body too large")
    assert "Traceback" not in console.getvalue()


@pytest.mark.parametrize("url", ["/settings/connections/new/", "/settings/tokens/", "/accounts/login/",
                                 "/admin/connections/connection/add/"])
@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", "multipart/form-data; boundary=b"])
def test_a_page_answers_a_plain_413_page(admin_client, url, content_type, console):
    response = admin_client.generic("POST", url, body_of(OVER_THE_PAGE_LIMIT, content_type), content_type=content_type)

    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "Request too large" in page and "settings.css" in page
    assert response["Content-Security-Policy"] and response["X-Frame-Options"] == "DENY"
    assert not Connection.objects.exists()
    assert "Traceback" not in console.getvalue()


def test_a_page_takes_a_body_under_the_limit(admin_client):
    response = admin_client.post("/settings/connections/new/", {"name": "fine", "description": "x" * 100_000})

    assert response.status_code == 200  # the form, with what is missing


@pytest.mark.parametrize("path, shape", [("/api/v1/connections/", "json"), ("/settings/connections/new/", "html")])
def test_a_content_length_that_is_no_number_is_a_400_in_the_surfaces_shape(admin_client, path, shape):
    response = admin_client.generic("POST", path, b"{}", content_type="application/json", CONTENT_LENGTH="12x")

    assert response.status_code == 400
    assert (response["Content-Type"] == "application/json") is (shape == "json")


def test_an_api_body_over_a_lower_django_limit_is_the_same_json_413(api, settings, console):
    """An operator may lower DATA_UPLOAD_MAX_MEMORY_SIZE below the API's limit: Django then refuses the body as
    DRF reads it, and the API still answers its 413."""
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000

    response = api.generic("POST", "/api/v1/connections/", body_of(5000, "application/json"),
                           content_type="application/json")

    assert response.status_code == 413 and response.json() == {"detail": f"Request body too large: at most "
                                                                         f"{api_limit()} bytes."}
    assert "Traceback" not in console.getvalue()
