"""gateway/middleware.py: gateway calls bypass the browser middleware, yet every answer has the site's headers."""

import pytest

from tokens.models import ApiToken

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
    assert b"".join(stream.streaming_content).endswith(b"data: [DONE]\n\n")
