"""The database unreachable under a served app (gunicorn, as `make run`): every surface answers a clear 503
in its own shape, with no traceback and nothing of the database's address or password.

Two outages, both real and both reachable as root in CI: PostgreSQL on a closed port of 127.0.0.1 (psycopg
gets "connection refused"), and SQLite pointed at a path that is a directory (sqlite3 cannot open it).
"""

import httpx
import pytest

from core.unavailable import MESSAGE
from tests.fakes.server import closed_port

from .servers import Served, served_environment

DB_PASSWORD = "db-pw-PLANTED-4f9a2c"
TOKEN = "llmc_" + "a" * 43  # well-formed, so it is looked up in the (unreachable) database
SESSION = {"sessionid": "abcdefghijklmnopqrstuvwxyz012345"}  # a session cookie is read from the database

# What no answer may carry: a traceback, the DSN or its parts, the engine's own error text.
FORBIDDEN = ("Traceback", DB_PASSWORD, "postgres://", "sqlite:///", "faultsdb", "Connection refused",
             "unable to open", "OperationalError", "psycopg")


@pytest.fixture(scope="module", params=["postgresql", "sqlite"])
def served(request, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp(f"down-{request.param}")
    if request.param == "postgresql":
        url = f"postgres://faults:{DB_PASSWORD}@127.0.0.1:{closed_port()}/faultsdb"
    else:
        (tmp_path / "faultsdb").mkdir()  # a directory where the database file should be
        url = f"sqlite:///{tmp_path / 'faultsdb'}"
    server = Served(served_environment(url, tmp_path), tmp_path / "server.log")
    yield server
    server.stop()


def assert_clean(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"].isdigit()
    for text in FORBIDDEN:
        assert text not in response.text, text


def test_the_settings_page_is_a_503_page_in_the_sites_layout(served):
    response = httpx.get(f"{served.url}/settings/connections/", cookies=SESSION)

    assert_clean(response)
    assert response.headers["Content-Type"].startswith("text/html")
    assert "Temporarily unavailable" in response.text and MESSAGE in response.text
    assert "/static/settings/settings.css" in response.text  # the site's layout, its stylesheet
    assert "Content-Security-Policy" in response.headers


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/", "/settings/endpoints/new/"])
def test_login_admin_and_forms_are_503_pages_too(served, path):
    response = httpx.get(f"{served.url}{path}", cookies=SESSION)

    assert_clean(response)
    assert MESSAGE in response.text


def test_the_api_is_a_json_503(served):
    response = httpx.get(f"{served.url}/api/v1/connections/", headers={"Authorization": f"Bearer {TOKEN}"})

    assert_clean(response)
    assert response.json() == {"detail": MESSAGE}


def test_the_api_with_a_session_is_a_json_503(served):
    assert_clean(response := httpx.get(f"{served.url}/api/v1/endpoints/", cookies=SESSION))
    assert response.json() == {"detail": MESSAGE}


@pytest.mark.parametrize("method, path", [
    ("POST", "/gateway/v1/chat/completions"), ("POST", "/gateway/chat/invocations"), ("GET", "/gateway/v1/models"),
])
def test_the_gateway_is_a_503_in_its_error_shape(served, method, path):
    body = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
    response = httpx.request(method, f"{served.url}{path}", headers={"Authorization": f"Bearer {TOKEN}"},
                             json=body if method == "POST" else None)

    assert_clean(response)
    assert response.json() == {"error": {"message": MESSAGE, "type": "server_error", "code": "database_unavailable"}}


def test_healthz_is_a_json_503_naming_the_database(served):
    response = httpx.get(f"{served.url}/healthz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable" and response.json()["database"] == "unavailable"
    for text in FORBIDDEN:
        assert text not in response.text


def test_pages_that_need_no_database_still_work(served):
    assert httpx.get(f"{served.url}/static/settings/settings.css").status_code == 200
    assert httpx.get(f"{served.url}/api/v1/connections/").status_code == 401  # no credentials: no lookup needed


def test_the_server_log_says_why_without_the_password(served):
    httpx.get(f"{served.url}/api/v1/connections/", headers={"Authorization": f"Bearer {TOKEN}"})

    log = served.log()
    assert "Database unavailable while serving GET /api/v1/connections/" in log
    assert DB_PASSWORD not in log and TOKEN not in log
