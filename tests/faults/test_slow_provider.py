"""A provider that hangs, served by gunicorn as `make run` serves it (uvicorn workers): the calls to it end
as 504 at GATEWAY_TIMEOUT, well before the provider would answer, and meanwhile the server keeps answering
everything else (another endpoint on a healthy provider, the API, /healthz). A provider that is down is a quick 502."""

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import closed_port

from .servers import Served, manage, served_environment

TIMEOUT = 2.0  # GATEWAY_TIMEOUT of the served app
SLOW_CALLS = 6  # in flight at once
CHAT = {"messages": [{"role": "user", "content": "Hi"}]}


@pytest.fixture(scope="module")
def providers():
    with FakeOpenAI(keys={PLANTED_KEY}) as slow, FakeOpenAI(keys={PLANTED_KEY}) as healthy:
        yield slow, healthy


@pytest.fixture(scope="module")
def served(tmp_path_factory, providers):
    slow, healthy = providers
    tmp_path = tmp_path_factory.mktemp("slow-provider")
    env = served_environment(f"sqlite:///{tmp_path / 'db.sqlite3'}", tmp_path, GATEWAY_TIMEOUT=str(TIMEOUT),
                             WEB_CONCURRENCY="2", DJANGO_SUPERUSER_PASSWORD="slow-provider-admin-pw")
    manage(env, "migrate", "--noinput", "--verbosity", "0")
    manage(env, "create_default_admin")
    token = manage(env, "create_api_token", "admin").strip()
    server = Served(env, tmp_path / "server.log")
    api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
    for name, base_url in (("slow", slow.base_url), ("healthy", healthy.base_url),
                           ("down", f"http://127.0.0.1:{closed_port()}/v1")):
        created = api.post("/api/v1/connections/", json={
            "name": name, "provider": "openai", "auth_method": "api_key",
            "secrets": {"api_key": PLANTED_KEY}, "config": {"base_url": base_url}})
        assert created.status_code == 201, created.text
        endpoint = api.post("/api/v1/endpoints/", json={
            "name": f"{name}-chat", "connection": name, "model": "gpt-4o-mini", "task": "chat"})
        assert endpoint.status_code == 201, endpoint.text
    yield api
    api.close()
    server.stop()


def timed(call) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_hanging_provider_times_out_while_everything_else_answers_quickly(served, providers):
    slow, _ = providers
    slow.hang(TIMEOUT * 3, times=SLOW_CALLS)

    def slow_call():
        with httpx.Client(base_url=str(served.base_url), headers=served.headers, timeout=30) as own:
            response, elapsed = timed(lambda: own.post("/gateway/slow-chat/invocations", json=CHAT))
            return response, elapsed, time.monotonic()

    quick_calls = {
        "gateway, healthy provider": lambda: served.post("/gateway/healthy-chat/invocations", json=CHAT),
        "gateway, model list": lambda: served.get("/gateway/v1/models"),
        "API list": lambda: served.get("/api/v1/connections/"),
        "healthz": lambda: served.get("/healthz"),
    }
    quick: list[tuple[str, int, float]] = []  # label, status, when it ended
    with ThreadPoolExecutor(SLOW_CALLS) as pool:
        in_flight = [pool.submit(slow_call) for _ in range(SLOW_CALLS)]
        deadline = time.monotonic() + TIMEOUT * 0.8  # rounds start while all slow calls wait
        time.sleep(0.2)
        while time.monotonic() < deadline:
            for label, call in quick_calls.items():
                response, _ = timed(call)
                quick.append((label, response.status_code, time.monotonic()))
        slow_results = [future.result() for future in in_flight]
        first_slow_answer = min(ended for _, _, ended in slow_results)

    assert len(slow.requests) >= SLOW_CALLS  # every slow call reached the provider and waited on it
    assert all(status == 200 for _, status, _ in quick), quick
    # At least one whole round of quick calls was answered while every slow call still hung (none waits behind them).
    answered_meanwhile = [label for label, _, ended in quick if ended < first_slow_answer]
    rounds = len(answered_meanwhile) // len(quick_calls)
    assert rounds >= 1, quick
    for response, elapsed, _ in slow_results:
        assert response.status_code == 504, response.text
        assert response.json()["error"]["code"] == "upstream_timeout"
        assert PLANTED_KEY not in response.text
        # Cut at the gateway's timeout, well before the provider would have answered.
        assert TIMEOUT <= elapsed < TIMEOUT * 3, elapsed
    print(f"\n{rounds} rounds of quick calls while {SLOW_CALLS} calls hung; slow calls ended after "
          f"{min(e for _, e, _ in slow_results):.2f}-{max(e for _, e, _ in slow_results):.2f} s (timeout {TIMEOUT} s)")


def test_a_provider_that_is_down_is_a_quick_502(served):
    response, elapsed = timed(lambda: served.post("/gateway/down-chat/invocations", json=CHAT))

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_unreachable"
    assert elapsed < TIMEOUT  # a refused connection is answered at once, not after the timeout


def test_a_stream_from_a_hanging_provider_is_a_504_before_any_event(served, providers):
    slow, _ = providers
    slow.hang(TIMEOUT * 3)

    response, elapsed = timed(lambda: served.post("/gateway/v1/chat/completions",
                                                  json={**CHAT, "model": "slow-chat", "stream": True}))

    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
    assert TIMEOUT <= elapsed < TIMEOUT * 3
