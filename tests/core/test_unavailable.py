"""core/unavailable.py's two hooks, called as Django calls them (the served behaviour is in tests/faults/)."""

import json

import pytest
from django.db import IntegrityError, InterfaceError, OperationalError

from core.unavailable import MESSAGE, DatabaseUnavailableMiddleware, server_error


def raised(error: Exception, path: str, rf):
    """What handler500 answers while `error` is being handled, as Django calls it."""
    try:
        raise error
    except Exception:
        return server_error(rf.get(path))


@pytest.mark.parametrize("error", [OperationalError("could not connect"), InterfaceError("connection already closed")])
@pytest.mark.parametrize("path, shape", [
    ("/api/v1/connections/", {"detail": MESSAGE}),
    ("/gateway/v1/models", {"error": {"message": MESSAGE, "type": "server_error", "code": "database_unavailable"}}),
    ("/healthz", {"status": "unavailable", "database": "unavailable"}),
])
def test_an_outage_raised_outside_a_view_is_still_the_surfaces_503(rf, error, path, shape):
    response = raised(error, path, rf)

    assert response.status_code == 503 and json.loads(response.content) == shape


def test_an_outage_on_a_page_is_the_html_503_page(rf):
    response = raised(OperationalError("could not connect"), "/settings/connections/", rf)

    assert response.status_code == 503 and MESSAGE in response.content.decode()
    assert "could not connect" not in response.content.decode()


@pytest.mark.parametrize("path, shape", [
    ("/api/v1/connections/", {"detail": "Server error."}),
    ("/gateway/v1/models", {"error": {"message": "Server error.", "type": "server_error", "code": "internal_error"}}),
])
def test_other_errors_stay_500_in_the_surfaces_json_shape(rf, path, shape):
    response = raised(ValueError("a bug"), path, rf)

    assert response.status_code == 500 and json.loads(response.content) == shape


def test_other_errors_on_a_page_are_the_500_page(rf):
    response = raised(IntegrityError("duplicate"), "/settings/connections/", rf)

    assert response.status_code == 500 and "Something went wrong" in response.content.decode()


def test_the_middleware_leaves_other_errors_to_django(rf):
    middleware = DatabaseUnavailableMiddleware(lambda request: None)

    assert middleware.process_exception(rf.get("/api/v1/"), ValueError("a bug")) is None
    assert middleware.process_exception(rf.get("/api/v1/"), OperationalError("down")).status_code == 503
