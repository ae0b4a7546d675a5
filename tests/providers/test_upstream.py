"""The upstream client: address guard after resolution, retry policy, pooling and isolation between calls."""

import asyncio
import logging
import socket

import aiohttp
import pytest

from providers import upstream
from providers.adapters import adapter_for
from providers.errors import GatewayError
from providers.addresses import address_allowed
from providers.upstream import AddressRefused, retry_after_seconds
from tests import provider_calls
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI
from tests.fakes.server import FakeServer, Reply
from tests.provider_fixtures import CHAT_BODY
from tests.provider_calls import run

pytestmark = pytest.mark.django_db


def models_url(fake: FakeOpenAI, host: str = "127.0.0.1") -> str:
    return f"http://{host}:{fake.server.port}/v1/models"


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {PLANTED_KEY}"}


# --- Private-address guard ------------------------------------------------------------------------------


def test_a_host_resolving_to_loopback_is_refused_unless_allowed(fake_openai, settings):
    settings.ALLOWED_PRIVATE_HOSTS = []

    with pytest.raises(AddressRefused) as refused:
        run(upstream.send("GET", models_url(fake_openai, "localhost"), headers=auth()))

    assert refused.value.address in ("127.0.0.1", "::1")  # refused after resolving, not by name
    assert "ALLOWED_PRIVATE_HOSTS" in str(refused.value)
    assert fake_openai.requests == []


def test_a_name_that_does_not_look_local_but_resolves_to_loopback_is_refused(fake_openai, settings, fake_dns):
    hostname = "api.rebinding.example"
    fake_dns[hostname] = "127.0.0.1"  # a public-looking name whose DNS answer points inside
    settings.ALLOWED_PRIVATE_HOSTS = []

    with pytest.raises(AddressRefused):
        run(upstream.send("GET", models_url(fake_openai, hostname), headers=auth()))

    assert fake_openai.requests == []


def test_the_metadata_address_is_refused_without_connecting():
    # A literal address is checked before any connection: no timeout is waited for (nothing there answers).
    with pytest.raises(AddressRefused):
        run(upstream.send("GET", "http://169.254.169.254/latest/meta-data/", headers={}))


def test_a_host_listed_in_allowed_private_hosts_is_reached(fake_openai, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["localhost"]

    response = run(upstream.send("GET", models_url(fake_openai, "localhost"), headers=auth()))

    assert response.status_code == 200


def test_local_servers_may_be_on_loopback_without_being_listed(fake_openai, settings):
    settings.ALLOWED_PRIVATE_HOSTS = []

    response = run(upstream.send("GET", models_url(fake_openai, "localhost"), headers=auth(), allow_loopback=True))

    assert response.status_code == 200


def test_an_openai_connection_pointing_at_loopback_is_refused_at_call_time(make_connection, make_endpoint,
                                                                           fake_openai, settings):
    settings.ALLOWED_PRIVATE_HOSTS = ["localhost"]  # allowed when it was saved…
    connection = make_connection(config={"base_url": f"http://localhost:{fake_openai.server.port}/v1"})
    endpoint = make_endpoint("chat", connection)
    settings.ALLOWED_PRIVATE_HOSTS = []  # …and no longer

    with pytest.raises(GatewayError) as raised:
        run(adapter_for("openai").invoke(connection.account(), endpoint.destinations.get().target, CHAT_BODY))

    assert (raised.value.status, raised.value.code) == (502, "upstream_address_refused")
    assert fake_openai.requests == []


def test_ollama_on_localhost_is_reached_without_being_listed(make_connection, make_endpoint, settings):
    settings.ALLOWED_PRIVATE_HOSTS = []
    with FakeOpenAI(require_auth=False) as fake:
        connection = make_connection("ollama", provider="ollama", auth_method="none", secrets={},
                                     config={"base_url": f"http://localhost:{fake.server.port}"})

        answer = run(adapter_for("ollama").invoke(connection.account(), make_endpoint("llama", connection).destinations.get().target, CHAT_BODY))

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

    assert run(upstream.send("GET", models_url(fake_openai), headers=auth())).status_code == 200


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
            answer = run(adapter_for("openai").invoke(connection.account(), make_endpoint("chat", connection).destinations.get().target, CHAT_BODY))
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
        with pytest.raises(aiohttp.ClientConnectorError):
            run(upstream.send("GET", f"http://127.0.0.1:{port.getsockname()[1]}/v1/models", headers={}))
    finally:
        port.close()

    assert [r.getMessage().split(";")[1].strip() for r in caplog.records] == [
        "retrying in 0.05s (retry 1 of 2).",
        "retrying in 0.10s (retry 2 of 2).",
    ]


def test_a_500_is_not_retried(openai_chat, fake_openai):
    fake_openai.fail(500, "boom")

    with pytest.raises(GatewayError):
        run(adapter_for("openai").invoke(openai_chat.destinations.get().connection.account(), openai_chat.destinations.get().target, CHAT_BODY))

    assert len(fake_openai.requests) == 1


def test_a_post_that_timed_out_is_not_retried(openai_chat, fake_openai, settings):
    settings.GATEWAY_TIMEOUT = 0.2
    fake_openai.hang(5)

    with pytest.raises(GatewayError) as raised:
        run(adapter_for("openai").invoke(openai_chat.destinations.get().connection.account(), openai_chat.destinations.get().target, CHAT_BODY))

    assert raised.value.status == 504
    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize("status", [429, 503])
def test_429_and_503_with_a_short_retry_after_are_retried(status, openai_chat, fake_openai):
    fake_openai.fail(status, "busy", headers={"Retry-After": "0"})

    answer = run(adapter_for("openai").invoke(openai_chat.destinations.get().connection.account(), openai_chat.destinations.get().target, CHAT_BODY))

    assert answer["object"] == "chat.completion"
    assert len(fake_openai.requests) == 2


def test_retry_after_retries_are_bounded(openai_chat, fake_openai):
    fake_openai.fail(429, "busy", headers={"Retry-After": "0"}, times=5)

    with pytest.raises(GatewayError) as raised:
        run(adapter_for("openai").invoke(openai_chat.destinations.get().connection.account(), openai_chat.destinations.get().target, CHAT_BODY))

    assert raised.value.status == 429
    assert len(fake_openai.requests) == 3


def test_a_503_without_retry_after_is_not_retried(openai_chat, fake_openai):
    fake_openai.fail(503, "down")

    with pytest.raises(GatewayError):
        run(adapter_for("openai").invoke(openai_chat.destinations.get().connection.account(), openai_chat.destinations.get().target, CHAT_BODY))

    assert len(fake_openai.requests) == 1


@pytest.mark.parametrize(("value", "seconds"), [("2", 2.0), ("0.5", 0.5), ("-3", 0.0), ("soon", None), ("", None)])
def test_retry_after_values(value, seconds):
    assert retry_after_seconds(value) == seconds


# --- Timeouts, pooling, isolation -----------------------------------------------------------------------


def test_timeouts_come_from_settings(settings):
    settings.GATEWAY_TIMEOUT = 42.0
    settings.GATEWAY_CONNECT_TIMEOUT = 3.0

    timeouts = upstream.timeouts()

    assert (timeouts.connect, timeouts.sock_connect, timeouts.sock_read, timeouts.total) == (3.0, 3.0, 42.0, None)


def test_one_pool_per_loop_is_shared_by_its_calls_and_each_address_policy_has_its_own():
    async def sessions_seen():
        async def one():
            return upstream.sessions().get(False)

        seen = await asyncio.gather(*(one() for _ in range(8)))
        return seen, upstream.sessions().get(True)

    seen, loopback = run(sessions_seen())

    assert len({id(session) for session in seen}) == 1
    assert loopback is not seen[0]


def test_another_loop_opens_its_own_pool(fake_openai):
    first = run(upstream.send("GET", models_url(fake_openai), headers=auth()))
    another = provider_calls.LoopThread()
    try:
        second = another.run(upstream.send("GET", models_url(fake_openai), headers=auth()))
    finally:
        another.close()

    assert first.status_code == second.status_code == 200
    assert len(fake_openai.server.connections) == 2


def test_calls_reuse_one_kept_alive_connection(fake_openai):
    for _ in range(5):
        run(upstream.send("GET", models_url(fake_openai), headers=auth()))

    assert len(fake_openai.requests) == 5
    assert len(fake_openai.server.connections) == 1


def test_cookies_from_one_answer_are_never_sent_with_later_calls(fake_openai):
    with FakeServer(lambda request: Reply.json({}, headers={"Set-Cookie": "session=abc; Path=/"})) as server:
        run(upstream.send("GET", f"{server.url}/first", headers={}))
        run(upstream.send("GET", f"{server.url}/second", headers={}))

        assert "cookie" not in server.requests[1].headers


def test_keys_travel_in_headers_only(openai_chat, fake_openai, azure_chat):
    run(adapter_for("openai").invoke(openai_chat.destinations.get().connection.account(), openai_chat.destinations.get().target, CHAT_BODY))
    run(adapter_for("openai").invoke(azure_chat.destinations.get().connection.account(), azure_chat.destinations.get().target, CHAT_BODY))

    for request in fake_openai.requests:
        assert PLANTED_KEY not in request.target
        assert PLANTED_KEY not in request.body.decode()


# --- Bounded answers ----------------------------------------------------------------------------------------


def endless(chunk: bytes = b"x" * (1024 * 1024)):
    """A body that never ends (a hostile or broken provider): 1 MiB after 1 MiB until the client lets go."""
    while True:
        yield chunk


@pytest.mark.parametrize("status", [200, 500])
def test_an_endless_answer_is_read_only_up_to_the_limit_and_memory_stays_flat(status, make_connection,
                                                                              make_endpoint, settings):
    import resource

    settings.GATEWAY_MAX_RESPONSE_BYTES = 4 * 1024 * 1024
    with FakeServer(lambda request: Reply(status, {"Content-Type": "application/json"}, chunks=endless())) as server:
        endpoint = make_endpoint("chat", make_connection(config={"base_url": f"{server.url}/v1"}))
        peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        for _ in range(3):
            with pytest.raises(GatewayError) as raised:
                run(adapter_for("openai").invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, CHAT_BODY))
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024

    if status == 200:
        assert (raised.value.status, raised.value.code) == (502, "upstream_response_too_large")
        assert "GATEWAY_MAX_RESPONSE_BYTES" in raised.value.message
    else:  # an error answer: only the start of it is read, for its message
        assert (raised.value.status, raised.value.code) == (502, "upstream_error")
        assert len(raised.value.message) <= 1100  # the provider's text trimmed to a message's length
    assert grown_mb < 32  # three endless answers, and the process holds at most the limit of one


def test_a_declared_length_over_the_limit_is_refused_before_reading(make_connection, make_endpoint, settings):
    settings.GATEWAY_MAX_RESPONSE_BYTES = 1024
    body = b'{"object": "chat.completion", "padding": "' + b"x" * 4096 + b'"}'
    with FakeServer(lambda request: Reply(200, {"Content-Type": "application/json"}, body)) as server:
        endpoint = make_endpoint("chat", make_connection(config={"base_url": f"{server.url}/v1"}))
        with pytest.raises(GatewayError) as raised:
            run(adapter_for("openai").invoke(endpoint.destinations.get().connection.account(), endpoint.destinations.get().target, CHAT_BODY))

    assert raised.value.code == "upstream_response_too_large"
