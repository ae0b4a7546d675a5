"""Pages, static files and the API as the server serves them (config/page_handler.py): on the page threads,
each request answered whole, more requests at once than there are threads, a provider test from a page."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.contrib.staticfiles import finders
from django.templatetags.static import static

from tests.conftest import PLANTED_KEY
from tokens.models import ApiToken

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def static_files_from_the_apps(settings):
    """whitenoise serves the apps' static files as they are (no `collectstatic` before the tests)."""
    settings.WHITENOISE_USE_FINDERS = True


def test_a_static_file_is_served_whole_with_its_headers(static_files_from_the_apps, asgi_live_server):
    answer = httpx.get(f"{asgi_live_server.url}{static('settings/settings.css')}")

    assert answer.status_code == 200
    assert answer.content == Path(finders.find("settings/settings.css")).read_bytes()
    assert answer.headers["content-type"].startswith("text/css")
    assert "content-security-policy" in answer.headers


def test_more_api_requests_at_once_than_page_threads_all_answer(asgi_live_server, admin_user, make_connection):
    make_connection("openai-prod")
    _, token = ApiToken.issue(user=admin_user)
    requests = settings.PAGE_THREADS * 3

    def list_connections(_):
        with httpx.Client(base_url=asgi_live_server.url, timeout=30) as client:
            return client.get("/api/v1/connections/", headers={"Authorization": f"Bearer {token}"})

    with ThreadPoolExecutor(requests) as pool:
        answers = list(pool.map(list_connections, range(requests)))

    assert [answer.status_code for answer in answers] == [200] * requests
    assert all([row["name"] for row in answer.json()["results"]] == ["openai-prod"] for answer in answers)


def test_a_connection_test_from_the_api_reaches_the_provider_and_answers(asgi_live_server, admin_user, openai_chat,
                                                                         fake_openai):
    _, token = ApiToken.issue(user=admin_user)
    name = openai_chat.destinations.get().connection.name

    answer = httpx.post(f"{asgi_live_server.url}/api/v1/connections/{name}/test/",
                        headers={"Authorization": f"Bearer {token}"}, timeout=30)

    assert answer.status_code == 200, answer.text
    assert answer.json()["ok"] is True
    assert fake_openai.presented_keys() == [PLANTED_KEY]
    assert PLANTED_KEY not in answer.text
