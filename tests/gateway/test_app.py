"""gateway/app.py: the gateway's routes served in front of Django, with the site's headers on every answer."""

import re

import pytest

from config.asgi import Site, django_application
from gateway.app import ROUTES, GatewayApp
from tests.asgi_client import AsgiClient
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db


async def broken(request, send, caller):
    raise ValueError("a bug")


def test_a_bug_in_a_gateway_view_is_a_json_500_with_the_sites_headers(admin_user, caplog):
    site = Site(django_application)
    site.gateway = GatewayApp(routes=(*ROUTES, ("GET", re.compile(r"v1/broken"), broken)))
    _, token = ApiToken.issue(user=admin_user)

    response = AsgiClient(site).get("/gateway/v1/broken", HTTP_AUTHORIZATION=f"Bearer {token}")

    assert response.status_code == 500
    assert response.json() == {"error": {"message": "Server error.", "type": "server_error", "code": "internal_error"}}
    assert "script-src 'self'" in response["Content-Security-Policy"]
    assert response["X-Frame-Options"] == "DENY" and response["X-Content-Type-Options"] == "nosniff"
    assert "a bug" in caplog.text  # logged for the operator, as Django logs any 500


def test_a_json_answer_has_its_length_and_a_stream_is_sent_as_it_comes(client, admin_user, make_connection,
                                                                       make_endpoint, fake_openai):
    make_endpoint("chat", make_connection("openai-prod", config={"base_url": fake_openai.base_url}))
    _, token = ApiToken.issue(user=admin_user)
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}

    answer = client.post("/gateway/v1/chat/completions", body, content_type="application/json", **auth)
    stream = client.post("/gateway/v1/chat/completions", {**body, "stream": True}, content_type="application/json",
                         **auth)

    assert answer.status_code == 200 and answer["Content-Length"] == str(len(answer.content))
    assert stream.status_code == 200 and stream.streaming and not stream.has_header("Content-Length")
    assert stream.content.endswith(b"data: [DONE]\n\n")


def test_an_unknown_path_under_the_prefix_is_the_sites_404(client):
    response = client.get("/gateway/no-such-route")

    assert response.status_code == 404
    assert "script-src 'self'" in response["Content-Security-Policy"]
