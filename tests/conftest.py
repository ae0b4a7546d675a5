import ipaddress
import socket

import pytest
from cryptography.fernet import Fernet, MultiFernet
from encrypted_model_fields import fields as encrypted_fields

from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Destination, Endpoint
from teams.models import Team

# Which tests run on which database (SQLite always; the database-touching ones on PostgreSQL too).
pytest_plugins = ["tests.databases", "tests.provider_fixtures"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Browser tests run last. Playwright's sync API leaves its event loop marked running in the main thread
    until the session ends, and every test after it that drives the site or a provider call from that thread
    (asgiref's async_to_sync, asyncio.run) would be refused."""
    browser = config.rootpath / "tests" / "browser"
    items.sort(key=lambda item: item.path.is_relative_to(browser))  # stable: the order within each stays


LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_local(host) -> bool:
    if isinstance(host, bytes):
        host = host.decode()
    if host is None or host in LOCAL_NAMES:
        return True
    try:
        return ipaddress.ip_address(str(host).strip("[]")).is_loopback
    except ValueError:
        return False


@pytest.fixture(autouse=True)
def usage_not_carried_over():
    """Calls a test makes are recorded in the process's buffer; none outlives the test (or its database)."""
    from usage.recorder import RECORDER

    yield
    RECORDER.buffer.clear()


@pytest.fixture(autouse=True)
def budget_tokens_not_carried_over():
    """Tokens a test's calls spent from budgets wait in the process's memory; none outlives the test."""
    from gateway.limits import HELD, PENDING_TOKENS

    yield
    PENDING_TOKENS.sums.clear()
    HELD.forget()  # its rows, and their ids, are the test's


# Names tests make resolve to addresses of their choosing (a DNS they control), e.g. to rebind to loopback.
FAKE_DNS: dict[str, str] = {}


@pytest.fixture(autouse=True, scope="session")
def no_traffic_beyond_this_machine():
    """No test reaches the internet: name lookups of anything but loopback fail at once, as offline."""
    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        if name in FAKE_DNS:
            return real_getaddrinfo(FAKE_DNS[name], *args, **kwargs)
        if not is_local(host):
            raise socket.gaierror(socket.EAI_NONAME, f"tests resolve only loopback names, not {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(socket, "getaddrinfo", loopback_only)
        yield


@pytest.fixture
def fake_dns():
    """Map host names to addresses for one test."""
    yield FAKE_DNS
    FAKE_DNS.clear()


@pytest.fixture(autouse=True, scope="session")
def one_request_at_a_time_in_the_live_server():
    """The live server shares the test's in-memory SQLite connection between its threads; two requests at
    once (a page's fetches) would use it concurrently and fail at random. Serve them one after another."""
    from django.core.servers.basehttp import WSGIServer
    from django.test.testcases import LiveServerThread

    class OneAtATimeServer(WSGIServer):
        # The server thread itself already uses the shared connections; nothing to hand to worker threads.
        def __init__(self, *args, connections_override=None, **kwargs):
            super().__init__(*args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(LiveServerThread, "server_class", OneAtATimeServer)
        yield


# A distinctive value tests plant and then look for everywhere a secret must not appear.
PLANTED_KEY = "sk-planted-SECRET-0123456789-abcdefWXYZ"


@pytest.fixture
def use_keys(monkeypatch, settings):
    """Switch the field encryption keys (first encrypts, all decrypt) as a restarted process would see them."""

    def switch(*keys: str) -> None:
        settings.FIELD_ENCRYPTION_KEY = list(keys)
        monkeypatch.setattr(encrypted_fields, "CRYPTER", MultiFernet([Fernet(k) for k in keys]))

    return switch


@pytest.fixture(autouse=True)
def users_join_the_default_team():
    """Users a test makes join the default team, which holds what fixtures make without naming a team, as
    the upgrade to teams made every existing user a member (tests of teams then set a user's teams)."""
    from django.contrib.auth import get_user_model
    from django.db.models.signals import post_save

    def join(sender, instance, created, raw=False, **kwargs):
        if created and not raw:
            instance.teams.add(Team.objects.default())

    post_save.connect(join, sender=get_user_model(), dispatch_uid="tests-join-default-team")
    yield
    post_save.disconnect(sender=get_user_model(), dispatch_uid="tests-join-default-team")


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("root", password="pw-root-123456")


@pytest.fixture
def make_connection(db):
    def make(name: str = "openai-prod", provider: str = "openai", auth_method: str = "api_key",
             secrets: dict | None = None, config: dict | None = None, actor=None, **fields) -> Connection:
        connection = Connection(name=name, provider=provider, auth_method=auth_method, config=config or {}, **fields)
        connection.update_secrets(secrets if secrets is not None else {"api_key": PLANTED_KEY})
        connection.full_clean()
        return connection_save(connection=connection, actor=actor)

    return make


@pytest.fixture
def make_endpoint(db):
    def make(name: str, connection: Connection, model: str = "gpt-4o-mini", task: str = "chat",
             fallbacks: tuple[tuple[Connection, str], ...] = (), **fields) -> Endpoint:
        """An endpoint with one primary destination (the connection and model), then `fallbacks` in order."""
        fields.setdefault("team", connection.team)  # an endpoint uses its own team's connections
        endpoint = Endpoint(name=name, task=task, **fields)
        endpoint.full_clean()
        destinations = [Destination(endpoint=endpoint, connection=connection, model=model, weight=100)]
        destinations += [Destination(endpoint=endpoint, connection=c, model=m, role="fallback") for c, m in fallbacks]
        for destination in destinations:
            destination.full_clean(exclude=["endpoint"], validate_constraints=False)
        endpoint.check_destinations(destinations)
        endpoint.save()
        for position, destination in enumerate(destinations):
            destination.endpoint, destination.position = endpoint, position
            destination.save()
        return endpoint

    return make


@pytest.fixture
def asgi_live_server(transactional_db):
    """The site served as the server serves it (config/asgi.py under uvicorn) in a thread of this process,
    on a free 127.0.0.1 port: for clients that need a real socket (SDKs), against the test's database."""
    import threading

    import uvicorn
    from django.conf import settings

    from config.asgi import Site
    from config.page_handler import PageHandler

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(Site(PageHandler(settings.PAGE_THREADS)), host="127.0.0.1", port=port,
                                           lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="asgi-live-server", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("the ASGI live server did not start")
        threading.Event().wait(0.01)

    class Live:
        url = f"http://127.0.0.1:{port}"

    yield Live()
    server.should_exit = True
    thread.join(10)


def bulk_endpoints(rows) -> list[Endpoint]:
    """Many endpoints at once, each with one primary destination: rows of (name, connection, model, task[, enabled])."""
    rows = list(rows)
    team = Team.objects.default()
    endpoints = Endpoint.objects.bulk_create(
        Endpoint(name=row[0], task=row[3], enabled=row[4] if len(row) > 4 else True, team=team) for row in rows
    )
    if any(endpoint.pk is None for endpoint in endpoints):
        endpoints = list(Endpoint.objects.filter(name__in=[row[0] for row in rows]).order_by("id"))
    Destination.objects.bulk_create(
        Destination(endpoint=endpoint, connection_id=getattr(row[1], "pk", row[1]), model=row[2], weight=100)
        for endpoint, row in zip(endpoints, rows)
    )
    return endpoints
