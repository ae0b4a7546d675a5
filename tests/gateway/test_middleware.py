"""gateway/middleware.py: gateway calls bypass the browser middleware, yet every answer has the site's headers."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.urls("tests.gateway.broken_urls")
def test_a_bug_in_a_gateway_view_is_a_json_500_with_the_sites_headers(client, caplog):
    client.raise_request_exception = False
    response = client.get("/gateway/v1/broken")

    assert response.status_code == 500
    assert response.json() == {"error": {"message": "Server error.", "type": "server_error", "code": "internal_error"}}
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    assert "a bug" in caplog.text  # logged for the operator, as Django logs any 500
