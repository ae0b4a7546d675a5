"""The upstream client: address guard after resolution, retry policy, pooling and isolation between calls."""

import logging
import os
import socket
import threading
import time

import httpx
import pytest

from providers import upstream
from providers.adapters import adapter_for
from providers.errors import GatewayError
from providers.upstream import AddressRefused, address_allowed, retry_after_seconds
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeServer, Reply
from tests.provider_fixtures import CHAT_BODY

pytestmark = pytest.mark.django_db


def models_url(fake: FakeOpenAI, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{fake.server.port}/v1/models"


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {PLANTED_KEY}"}


# --- Private-address guard ------------------------------------------------------------------------------


def test_a_host_resolving_to_loopback_is_refused_unless_allowed(fake_openai, settings):
    settings.ALLOWED_PRIVATE_HOSTS = []

    with pytest.raises(AddressRefused) as refused:
        upstream.send("GET", models_url(fake_openai, "localhost"), headers=auth())

    assert refused.value.address in ("127.0.0.1", "::1")  # refused after resolving, not by name
    assert "ALLOWED_PRIVATE_HOSTS" in str(refused.value)
    assert fake_openai.requests == []


def test_a_name_that_does_not_look_local_but_resolves_to_loopback_is_refused(fake_openai, settings, fake_dns):
    hostname = "api.rebinding.example"
    fake_dns[hostname] = "127.0.0.1"  # a public-looking name whose DNS answer points inside
    settings.ALLOWED_PRIVATE_HOSTS = []

    with pytest.raises(AddressRefused):
        upstream.send("GET", models_url(fake_openai, hostname), headers=auth())

    assert fake_openai.requests == []


def test_the_metadata_address_is_refused_without_connecting():
    started = time.perf_counter()

    with pytest.raises(AddressRefused):
        upstream.send("GET", "http://169.254.169.254/latest/meta-data/", headers={})

    assert time.perf_counter() - started < 0.5


def test_a_host_listed_in_allowed_private_hosts_is_reached(fake_openai, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["localhost"]

    response = upstream.send("GET", models_url(fake_openai, "localhost"), headers=auth())

    assert response.status_code == 200


def test_local_servers_may_be_on_loopback_without_being_listed(fake_openai, settings):
    settings.ALLOWED_PRIVATE_HOSTS = []

    response = upstream.send("GET", models_url(fake_openai, "localhost"), headers=auth(), allow_loopback=True)

    assert response.status_code == 200


def test_an_openai_connection_pointing_at_loopback_is_refused_at_call_time(make_connection, make_endpoint,
                                                                           fake_openai, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["localhost"]  # allowed when it was saved…
    connection = make_connection(config={"base_url": f"http://localhost:{fake_openai.server.port}/v1"})
    endpoint = make_endpoint("chat", connection)
    settings.ALLOWED_PRIVATE_HOSTS = []  # …and no longer

    with pytest.raises(GatewayError) as raised:
        adapter_for("openai").invoke(connection.account(), endpoint.target, CHAT_BODY)

    assert (raised.value.status, raised.value.code) == (502, "upstream_address_refused")
    assert fake_openai.requests == []


def test_ollama_on_localhost_is_reached_without_being_listed(make_connection, make_endpoint, settings):
    settings.ALLOWED_PRIVATE_HOSTS = []
    with FakeOpenAI(require_auth=False) as fake:
        connection = make_connection("ollama", provider="ollama", auth_method="none", secrets={},
                                     config={"base_url": f"http://localhost:{fake.server.port}"})

        answer = adapter_for("ollama").invoke(connection.account(), make_endpoint("llama", connection).target, CHAT_BODY)

    assert answer["object"] == "chat.completion"


@pytest.mark.parametrize(
    ("host", "address", "allowed"),
    [
        ("api.openai.com", "104.18.6.192", True),
        ("evil.example", "10.0.0.5", False),
        ("evil.example", "192.168.1.1", False),
        ("evil.example", "169.254.169.254", False),
        ("evil.example", "::1", False),
        ("evil.example", "::ffff:127.0.0.1", False),
        ("evil.example", "fd00::1", False),
        ("evil.example", "0.0.0.0", False),
        ("evil.example", "127.0.0.1", True),  # 127.0.0.1 is listed in the test settings
        ("gpu-box.internal", "10.1.2.3", False),
    ],
)
def test_address_policy(host, address, allowed):
    assert address_allowed(host, address, allow_loopback=False) is allowed


def test_listed_names_and_loopback_for_local_servers(settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["gpu-box.internal"]

    assert address_allowed("gpu-box.internal", "10.1.2.3", allow_loopback=False)
    assert address_allowed("localhost", "::1", allow_loopback=True)
    assert not address_allowed("localhost", "10.1.2.3", allow_loopback=True)


def test_proxy_variables_do_not_route_around_the_guard(fake_openai, monkeypatch):
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")

    assert upstream.send("GET", models_url(fake_openai), headers=auth()).status_code == 200


# --- Retries --------------------------------------------------------------------------------------------


class ListenOnRetry(logging.Handler):
    """Brings a refusing provider up when the client logs its first connect retry: deterministic, no sleeps."""

    def __init__(self, fake: FakeOpenAI):
        super().__init__()
        self.fake = fake
        self.retries = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.getMessage() and self.retries == 0:
            self.fake.listen()
        self.retries += "retrying" in record.getMessage()


def test_a_connect_error_is_retried(make_connection, make_endpoint):
    with FakeOpenAI(keys={PLANTED_KEY}, listen=False) as fake:  # bound, refusing connections for now
        connection = make_connection(config={"base_url": fake.base_url})
        handler = ListenOnRetry(fake)
        logging.getLogger("providers.upstream").addHandler(handler)
        try:
            answer = adapter_for("openai").invoke(connection.account(), make_endpoint("chat", connection).target, CHAT_BODY)
        finally:
            logging.getLogger("providers.upstream").removeHandler(handler)

        assert answer["object"] == "chat.completion"
        assert handler.retries == 1
        assert len(fake.requests) == 1


def test_connect_retries_are_bounded(caplog):
    caplog.set_level(logging.WARNING, logger="providers.upstream")
    port = socket.socket()
    port.bind(("127.0.0.1", 0))  # bound, never listening: every attempt is refused
    try:
        with pytest.raises(httpx.ConnectError):
            upstream.send("GET", f"http://127.0.0.1:{port.getsockname()[1]}/v1/models", headers={})
    finally:
        port.close()

    assert [r.getMessage().split(";")[1].strip() for r in caplog.records] == [
        "retrying in 0.05s (retry 1 of 2).",
        "retrying in 0.10s (retry 2 of 2).",
    ]


def test_a_500_is_not_retried(openai_chat, fake_openai):
    fake_openai.fail(500, "boom")

    with pytest.raises(GatewayError):
        adapter_for("openai").invoke(openai_chat.connection.account(), openai_chat.target, CHAT_BODY)

    assert len(fake_openai.requests) == 1


def test_a_post_that_timed_out_is_not_retried(openai_chat, fake_openai, settings):
    settings.GATEWAY_TIMEOUT = 0.2
    fake_openai.hang(5)

    with pytest.raises(GatewayError) as raised:
        adapter_for("openai").invoke(openai_chat.connection.account(), openai_chat.target, CHAT_BODY)

    assert raised.value.status == 504
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_with_a_short_retry_after_are_retried(status, openai_chat, fake_openai):
    fake_openai.fail(status, "busy", headers={"Retry-After": "0"})

    answer = adapter_for("openai").invoke(openai_chat.connection.account(), openai_chat.target, CHAT_BODY)

    assert answer["object"] == "chat.completion"
    assert len(fake_openai.requests) == 2


def test_retry_after_retries_are_bounded(openai_chat, fake_openai):
    fake_openai.fail(429, "busy", headers={"Retry-After": "0"}, times=5)

    with pytest.raises(GatewayError) as raised:
        adapter_for("openai").invoke(openai_chat.connection.account(), openai_chat.target, CHAT_BODY)

    assert raised.value.status == 429
    assert len(fake_openai.requests) == 3


def test_a_503_without_retry_after_is_not_retried(openai_chat, fake_openai):
    fake_openai.fail(503, "down")

    with pytest.raises(GatewayError):
        adapter_for("openai").invoke(openai_chat.connection.account(), openai_chat.target, CHAT_BODY)

    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(("value", "seconds"), [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), ("", None)])
def test_retry_after_values(value, seconds):
    assert retry_after_seconds(value) == seconds


# --- Timeouts, pooling, isolation -----------------------------------------------------------------------


def test_timeouts_come_from_settings(settings):
    settings.GATEWAY_TIMEOUT = 42.0
    settings.GATEWAY_CONNECT_TIMEOUT = 3.0

    assert upstream.timeouts() == {"connect": 3.0, "read": 42.0, "write": 42.0, "pool": 3.0}


def test_one_pool_per_process_is_shared_by_threads():
    transports = []
    threads = [threading.Thread(target=lambda: transports.append(upstream.get_transport())) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len({id(transport) for transport in transports}) == 1
    assert upstream.get_transport(allow_loopback=True) is not transports[0]  # the other policy has its own pool


def test_a_forked_child_opens_its_own_pool(fake_openai):
    upstream.send("GET", models_url(fake_openai), headers=auth())
    parent_transport = upstream.get_transport()
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # the child reports whether it got a fresh pool, then leaves without cleanup
        os.write(write_end, b"1" if upstream.get_transport() is not parent_transport else b"0")
        os._exit(0)
    os.waitpid(child, 0)

    assert os.read(read_end, 1) == b"1"


def test_calls_reuse_one_kept_alive_connection(fake_openai):
    for _ in range(5):
        upstream.send("GET", models_url(fake_openai), headers=auth())

    assert len(fake_openai.requests) == 5
    assert len(fake_openai.server.connections) == 1


def test_cookies_from_one_answer_are_never_sent_with_later_calls(fake_openai):
    with FakeServer(lambda request: Reply.json({}, headers={"Set-Cookie": "session=abc; Path=/"})) as server:
        upstream.send("GET", f"{server.url}/first", headers={})
        upstream.send("GET", f"{server.url}/second", headers={})

        assert "cookie" not in server.requests[1].headers


def test_keys_travel_in_headers_only(openai_chat, fake_openai, azure_chat):
    adapter_for("openai").invoke(openai_chat.connection.account(), openai_chat.target, CHAT_BODY)
    adapter_for("openai").invoke(azure_chat.connection.account(), azure_chat.target, CHAT_BODY)

    for request in fake_openai.requests:
        assert PLANTED_KEY not in request.target
        assert PLANTED_KEY not in request.body.decode()
