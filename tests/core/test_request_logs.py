"""A refused request is one line in the log: Django's 403 (a missing permission), its 400s for a suspicious or bad
request (a forged Host header, too many form fields) are logged with the exception's traceback, which says
nothing an operator needs and floods the log. Errors of the server (5xx) keep theirs."""

import logging
import sys
from io import StringIO

import pytest
from django.contrib.auth.models import Permission

from core.redaction import RedactSecrets
from tests.conftest import PLANTED_KEY

pytestmark = pytest.mark.django_db


@pytest.fixture
def console():
    """What the configured log handler prints, at every level."""
    root = logging.getLogger()
    handler = next(h for h in root.handlers if any(isinstance(f, RedactSecrets) for f in h.filters))
    buffer = StringIO()
    previous_stream, previous_level = handler.setStream(buffer), root.level
    root.setLevel(logging.DEBUG)
    yield buffer
    handler.setStream(previous_stream)
    root.setLevel(previous_level)


def lines_of(console: StringIO, logger_text: str) -> list[str]:
    return [line for line in console.getvalue().splitlines() if logger_text in line]


@pytest.fixture
def viewer(client, django_user_model):
    user = django_user_model.objects.create_user("viewer", password="pw-viewer-123456", is_staff=True)
    user.user_permissions.add(Permission.objects.get(content_type__app_label="connections", codename="view_connection"))
    client.force_login(user)
    return client


@pytest.mark.parametrize("method, path", [("get", "/settings/connections/new/"),
                                          ("post", "/settings/connections/openai-prod/test/"),
                                          ("post", "/admin/connections/connection/add/")])
def test_a_403_for_a_missing_permission_is_one_line(viewer, console, make_connection, method, path):
    make_connection()

    response = getattr(viewer, method)(path)

    assert response.status_code == 403
    output = console.getvalue()
    assert "Traceback" not in output and "PermissionDenied" not in output
    assert lines_of(console, "Forbidden") == [f"Forbidden (Permission denied): {path}"]


def test_a_forged_host_header_is_one_line(client, console):
    response = client.get("/settings/connections/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    output = console.getvalue()
    assert "Traceback" not in output
    assert lines_of(console, "evil.example") == [
        "Invalid HTTP_HOST header: 'evil.example'. You may need to add 'evil.example' to ALLOWED_HOSTS."
    ]


def test_too_many_form_fields_is_one_line(admin_client, console):
    fields = "&".join(f"f{i}=x" for i in range(1200))

    response = admin_client.post("/settings/connections/new/", fields,
                                 content_type="application/x-www-form-urlencoded")

    assert response.status_code == 400
    assert "Traceback" not in console.getvalue()
    assert len(lines_of(console, "DATA_UPLOAD_MAX_NUMBER_FIELDS")) == 1


def test_a_refused_request_logs_no_secret_it_carried(client, console):
    response = client.get("/settings/connections/", HTTP_HOST="evil.example", HTTP_AUTHORIZATION=f"Bearer {PLANTED_KEY}",
                          HTTP_X_API_KEY=PLANTED_KEY)

    assert response.status_code == 400
    assert PLANTED_KEY not in console.getvalue()


def test_a_server_error_keeps_its_traceback(console):
    try:
        raise RuntimeError("the view broke")
    except RuntimeError:
        logging.getLogger("django.request").error("Internal Server Error: %s", "/settings/", exc_info=sys.exc_info(),
                                                  extra={"status_code": 500})

    output = console.getvalue()
    assert "Internal Server Error: /settings/" in output and "Traceback" in output and "the view broke" in output
