"""The documented production deployment, run for real on 127.0.0.1: Debian's nginx with deploy/nginx.conf
terminating TLS (a certificate made here) in front of two app instances (HTTPS=true, BEHIND_PROXY=true)
sharing a throwaway PostgreSQL, every check made through the proxy over HTTPS as a client would.

These tests start their own PostgreSQL and touch no Django test database, so tests/databases.py keeps them
out of the PostgreSQL rerun of `make test`: they run once, in the first half.
"""

import json
import os
import re
import shutil
import signal
import socket
import ssl
import tempfile
import threading
import time
import uuid
import warnings
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from bench.served import ADMIN_PASSWORD, Served, app_env, prepare, server_pids, serving
from tests.conftest import FAKE_DNS
from tests.fakes.openai import CONTENT, FakeOpenAI

from .stack import (
    SERVER_NAME,
    NginxPaths,
    documented_settings,
    error_output,
    free_port,
    logged,
    make_certificate,
    running_nginx,
    throwaway_postgres,
    trusting,
)

FIRST_KEY = "sk-deploy-first-0123456789abcdef"
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}
SIGNED_IN = 'title="Signed in as admin"'
HSTS = "max-age=31536000; includeSubDomains; preload"
LOCKED_OUT = "Too many failed logins for this username from your address."


@dataclass
class Stack:
    base_url: str
    http_url: str
    certificate: Path
    nginx: NginxPaths
    instances: list[Served]
    fake: FakeOpenAI
    token: str
    logs: list[Path] = field(default_factory=list)

    @property
    def upstreams(self) -> list[str]:
        return self.nginx.upstreams

    @contextmanager
    def client(self, source: str = "127.0.0.1", **options) -> Iterator[httpx.Client]:
        """A client of the proxy from `source` (any 127.x address is this machine: a different client)."""
        transport = httpx.HTTPTransport(verify=trusting(self.certificate), local_address=source)
        with httpx.Client(base_url=self.base_url, transport=transport, timeout=30, **options) as client:
            yield client

    @contextmanager
    def api(self) -> Iterator[httpx.Client]:
        with self.client(headers={"Authorization": f"Bearer {self.token}"}) as client:
            yield client

    def diagnostics(self) -> str:
        parts = [error_output(self.nginx)] + [log.read_text(errors="replace")[-3000:] for log in self.logs]
        return "\n---\n".join(parts)


def marked() -> tuple[str, dict[str, str]]:
    """A marker and the User-Agent header that puts it in nginx's access log line for the request."""
    marker = uuid.uuid4().hex[:12]
    return marker, {"User-Agent": f"deploy-test {marker}"}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    directory = Path(tempfile.mkdtemp(prefix="deploy-test-"))
    directory.chmod(0o755)  # nginx's workers (www-data) read the static files in it
    FAKE_DNS[SERVER_NAME] = "127.0.0.1"
    try:
        with ExitStack() as exits, throwaway_postgres() as database_url:
            fake = exits.enter_context(FakeOpenAI(keys={FIRST_KEY}))
            static_root = directory / "staticfiles"
            ports = [free_port(), free_port()]
            paths = NginxPaths(directory=directory, https_port=free_port(), http_port=free_port(),
                               upstreams=[f"127.0.0.1:{port}" for port in ports],
                               certificates=directory / "tls", static_root=static_root)
            certificate = make_certificate(paths.certificates)
            # The documented environment file, with this machine's keys, database, addresses and paths (and
            # the instance's own address for health checks, as the file suggests), sized for a test.
            documented = documented_settings()
            assert documented["ALLOWED_HOSTS"] == SERVER_NAME
            here = {"HOST": "127.0.0.1", "ALLOWED_HOSTS": f"{SERVER_NAME},127.0.0.1", "STATIC_ROOT": str(static_root),
                    "WEB_CONCURRENCY": "1"}
            envs = [{**documented, **app_env(str(directory), port, database_url), **here} for port in ports]
            for number, env in enumerate(envs, start=1):  # each its own runtime directory, as the unit gives it
                env["XDG_RUNTIME_DIR"] = str(directory / f"run-{number}")
                Path(env["XDG_RUNTIME_DIR"]).mkdir(mode=0o700)
            token = prepare(envs[0])  # migrate, admin, collectstatic, API token: once, as a release does
            logs = [directory / f"instance-{number}.log" for number in (1, 2)]
            instances = [exits.enter_context(serving(env, token, log=log)) for env, log in zip(envs, logs)]
            exits.enter_context(running_nginx(paths))
            result = Stack(base_url=f"https://{SERVER_NAME}:{paths.https_port}",
                           http_url=f"http://{SERVER_NAME}:{paths.http_port}", certificate=certificate,
                           nginx=paths, instances=instances, fake=fake, token=token, logs=logs)
            with result.api() as api:
                created = api.post("/api/v1/connections/", json={
                    "name": "shared", "provider": "openai", "auth_method": "api_key",
                    "secrets": {"api_key": FIRST_KEY}, "config": {"base_url": fake.base_url}})
                assert created.status_code == 201, created.text + result.diagnostics()
                endpoint = api.post("/api/v1/endpoints/", json={
                    "name": "chat", "connection": "shared", "model": "gpt-4o-mini", "task": "chat"})
                assert endpoint.status_code == 201, endpoint.text
            yield result
    finally:
        FAKE_DNS.pop(SERVER_NAME, None)
        shutil.rmtree(directory, ignore_errors=True)


# --- TLS and the redirect -------------------------------------------------------------------------------


def handshake(stack: Stack, context: ssl.SSLContext, server_name: str | None = SERVER_NAME) -> tuple[str, str]:
    with socket.create_connection(("127.0.0.1", stack.nginx.https_port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_name) as tls:
            return tls.version(), tls.cipher()[0]


def test_plain_http_is_redirected_to_https(stack):
    with httpx.Client(timeout=10) as client:
        response = client.get(f"{stack.http_url}/settings/?tab=tokens")

    assert response.status_code == 301
    assert response.headers["Location"] == f"https://{SERVER_NAME}/settings/?tab=tokens"


def test_tls_is_1_2_or_1_3_with_forward_secret_aead_ciphers_only(stack):
    assert handshake(stack, trusting(stack.certificate))[0] == "TLSv1.3"
    tls12 = trusting(stack.certificate)
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    version, cipher = handshake(stack, tls12)
    assert version == "TLSv1.2" and cipher.startswith("ECDHE-") and ("GCM" in cipher or "CHACHA20" in cipher)

    # A client offering only what the server must refuse gets the server's refusal (an alert), not its own.
    weak_cipher = trusting(stack.certificate)
    weak_cipher.maximum_version = ssl.TLSVersion.TLSv1_2
    weak_cipher.set_ciphers("AES256-SHA:@SECLEVEL=0")  # RSA key exchange, CBC: no forward secrecy
    with pytest.raises(ssl.SSLError, match="ALERT_HANDSHAKE_FAILURE"):
        handshake(stack, weak_cipher)
    old_protocol = trusting(stack.certificate)
    old_protocol.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Python's own warning about choosing TLS 1.1
        old_protocol.minimum_version = old_protocol.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(ssl.SSLError, match="ALERT_PROTOCOL_VERSION"):
        handshake(stack, old_protocol)


def test_a_handshake_for_another_name_is_refused(stack):
    """Scanners trying the bare address get no certificate (the default server rejects the handshake)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        handshake(stack, context, server_name="other.example.com")
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        handshake(stack, context, server_name=None)


# --- The site through the proxy ------------------------------------------------------------------------


def log_in(client: httpx.Client, base_url: str, password: str, **headers: str) -> httpx.Response:
    """The login form as a browser sends it: CSRF token, Origin and Referer of the page."""
    if "csrftoken" not in client.cookies:
        assert client.get("/accounts/login/").status_code == 200
    form = {"username": "admin", "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"]}
    return client.post("/accounts/login/", data=form, headers={
        "Origin": base_url, "Referer": f"{base_url}/accounts/login/", **headers})


def test_login_over_https_sets_secure_cookies_and_hsts_and_the_session_works_on_either_instance(stack):
    with stack.client() as browser:
        marker, user_agent = marked()
        response = log_in(browser, stack.base_url, ADMIN_PASSWORD, **user_agent)

        assert response.status_code == 302 and response.headers["Location"] == "/settings/", response.text
        cookies = {cookie.split("=", 1)[0]: cookie for cookie in response.headers.get_list("Set-Cookie")}
        assert "sessionid" in cookies and "csrftoken" in cookies
        for cookie in cookies.values():
            assert "; Secure" in cookie, cookie
        assert "; HttpOnly" in cookies["sessionid"]
        assert response.headers["Strict-Transport-Security"] == HSTS
        logged_in_on = logged(stack.nginx.access_log, marker).answered_by

        # The session lives in the database: the other instance knows it too.
        settings_page = browser.get("/settings/", follow_redirects=True).url.path
        served_by = set()
        for _ in range(4):
            marker, user_agent = marked()
            page = browser.get(settings_page, headers=user_agent)
            assert page.status_code == 200 and SIGNED_IN in page.text
            assert page.headers["Strict-Transport-Security"] == HSTS
            served_by.add(logged(stack.nginx.access_log, marker).answered_by)
        assert served_by == set(stack.upstreams), "round robin over both instances"
        assert served_by - {logged_in_on}


def test_static_files_are_served_by_nginx_compressed_and_cached(stack):
    with stack.client() as browser:
        page = browser.get("/accounts/login/")
        stylesheet = re.search(r'href="(/static/settings/settings\.[0-9a-f]{12}\.css)"', page.text)
        assert stylesheet, page.text
        marker, user_agent = marked()
        response = browser.get(stylesheet[1], headers={**user_agent, "Accept-Encoding": "gzip"})

    assert response.status_code == 200 and response.headers["Content-Type"] == "text/css"
    assert response.headers["Content-Encoding"] == "gzip"  # collectstatic's .gz, as is
    assert response.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "body" in response.text
    assert logged(stack.nginx.access_log, marker).upstreams == ["-"]  # no instance involved


# --- The gateway through the proxy ---------------------------------------------------------------------


def test_a_key_rotated_through_one_instance_is_used_by_the_next_call_through_the_other(stack):
    crossed = False
    with stack.api() as api:
        for attempt in range(4):
            key = f"sk-deploy-rotated-{attempt}-{uuid.uuid4().hex}"
            stack.fake.keys.add(key)
            marker, user_agent = marked()
            rotated = api.patch("/api/v1/connections/shared/", json={"secrets": {"api_key": key}}, headers=user_agent)
            assert rotated.status_code == 200, rotated.text
            rotated_on = logged(stack.nginx.access_log, marker).answered_by

            marker, user_agent = marked()
            called = api.post("/gateway/v1/chat/completions", json=CHAT, headers=user_agent)
            assert called.status_code == 200, called.text
            assert stack.fake.presented_keys()[-1] == key
            if logged(stack.nginx.access_log, marker).answered_by != rotated_on:
                crossed = True
                break
    assert crossed, "round robin sent the call to the instance that did not rotate the key"


class Gate(threading.Event):
    """The fake provider waits on this after its first content chunk; it notes whether the wait ended because
    the gate was opened (True) or because it gave up (False)."""

    def __init__(self):
        super().__init__()
        self.waits: list[bool] = []

    def wait(self, timeout: float | None = None) -> bool:
        opened = super().wait(timeout)
        self.waits.append(opened)
        return opened


def test_a_stream_arrives_chunk_by_chunk_through_the_proxy(stack):
    """The client opens the gate on seeing the first content chunk, and the fake sends the rest only then: the
    stream can only complete this way if that chunk crossed the app and nginx while the provider was still
    sending (a buffering proxy holds it until the fake gives up waiting, and the gate stays shut)."""
    gate = stack.fake.stream_gate = Gate()
    pieces = []
    try:
        with stack.api() as api, api.stream("POST", "/gateway/v1/chat/completions",
                                            json={**CHAT, "stream": True}) as response:
            assert response.status_code == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if not line.startswith("data: {"):
                    continue
                piece = json.loads(line.removeprefix("data: "))["choices"][0]["delta"].get("content")
                if piece:
                    if not pieces:
                        assert gate.waits == [] and not gate.is_set()  # the fake is still holding the rest
                        gate.set()
                    pieces.append(piece)
    finally:
        stack.fake.stream_gate = None

    assert gate.waits == [True]
    assert pieces == CONTENT


def test_a_body_over_the_gateway_limit_gets_the_gateways_own_error_from_nginx(stack):
    too_large = b" " * (20 * 1024 * 1024 + 1)
    headers = {"Authorization": f"Bearer {stack.token}", "Content-Type": "application/json"}
    with stack.client() as client:
        through_nginx = client.post("/gateway/v1/chat/completions", content=too_large, headers=headers)
    direct = httpx.post(f"{stack.instances[0].url}/gateway/v1/chat/completions", content=too_large,
                        headers={**headers, "X-Forwarded-Proto": "https"}, timeout=30)

    assert direct.status_code == through_nginx.status_code == 413
    assert through_nginx.headers["Content-Type"] == "application/json"
    assert through_nginx.json() == direct.json()


# --- Login throttling by the real client address --------------------------------------------------------


def test_login_throttling_counts_the_address_nginx_saw_whatever_x_forwarded_for_the_client_sends(stack):
    attacker, other = "127.0.0.2", "127.0.0.3"
    with stack.client(source=attacker) as browser:
        for number in range(10):  # a different forged address every time
            failed = log_in(browser, stack.base_url, "wrong-password", **{"X-Forwarded-For": f"198.51.100.{number}"})
            assert failed.status_code == 200 and "correct username and password" in failed.text

        # Locked out, even with the right password and the other client's address forged.
        for forged in ({"X-Forwarded-For": other}, {}):
            refused = log_in(browser, stack.base_url, ADMIN_PASSWORD, **forged)
            assert refused.status_code == 429 and LOCKED_OUT in refused.text

    with stack.client(source=other) as browser:  # the other client is not blocked
        assert log_in(browser, stack.base_url, ADMIN_PASSWORD).status_code == 302


# --- Health and failover ---------------------------------------------------------------------------------


def test_each_instance_answers_its_health_check_over_plain_http(stack):
    """What a load balancer's health check sees: /healthz on the instance's own address, without TLS."""
    for instance in stack.instances:
        health = httpx.get(f"{instance.url}/healthz", timeout=10)
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "database": "ok", "encryption": "ok"}
        # Everything else on the plain address still goes to HTTPS.
        assert httpx.get(f"{instance.url}/settings/", timeout=10).status_code == 301
    with stack.client() as client:
        assert client.get("/healthz").json()["status"] == "ok"


@dataclass
class Call:
    index: int
    marker: str
    kind: str
    status: int | str = "pending"


class Caller:
    """Gateway calls and API reads through nginx, one after another in a thread, until stopped."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.calls: list[Call] = []
        self.wanted = 0
        self.enough = threading.Event()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.keep_calling, daemon=True)

    def keep_calling(self) -> None:
        with self.stack.api() as api:
            while not self.stopping.is_set():
                marker, user_agent = marked()
                call = Call(len(self.calls), marker, "chat" if len(self.calls) % 2 else "list")
                self.calls.append(call)
                try:
                    if call.kind == "chat":
                        response = api.post("/gateway/v1/chat/completions", json=CHAT, headers=user_agent)
                    else:
                        response = api.get("/api/v1/connections/", headers=user_agent)
                    call.status = response.status_code
                except httpx.HTTPError as error:
                    call.status = repr(error)
                if len(self.calls) >= self.wanted:
                    self.enough.set()

    def wait_for(self, more: int) -> int:
        """Wait until `more` calls have started after now; return how many had started before."""
        started = len(self.calls)
        self.enough.clear()
        self.wanted = started + more
        assert self.enough.wait(60), self.stack.diagnostics()
        return started

    @contextmanager
    def running(self) -> Iterator["Caller"]:
        self.thread.start()
        try:
            yield self
        finally:
            self.stopping.set()
            self.thread.join(timeout=60)

    def answered_by(self, calls: list[Call]) -> set[str]:
        return {logged(self.stack.nginx.access_log, call.marker).answered_by for call in calls if call.status == 200}


def workers(instance: Served) -> set[int]:
    return set(server_pids(instance.pid)) - {instance.pid}


def test_reloading_an_instance_for_a_new_release_fails_no_call(stack):
    """`systemctl reload` (SIGHUP): gunicorn starts workers with the code on disk and lets the old ones finish,
    keeping its socket open, while calls keep coming."""
    instance = stack.instances[0]
    with Caller(stack).running() as caller:
        caller.wait_for(6)
        for _ in range(2):
            old = workers(instance)
            os.kill(instance.pid, signal.SIGHUP)
            deadline = time.monotonic() + 30
            while workers(instance) & old or not workers(instance):
                assert time.monotonic() < deadline, stack.diagnostics()
                time.sleep(0.05)
            caller.wait_for(6)

    failed = [call for call in caller.calls if call.status != 200]
    assert not failed, f"{failed}\n{stack.diagnostics()}"
    assert caller.answered_by(caller.calls) == set(stack.upstreams)


def test_with_one_instance_stopped_every_call_goes_through_the_other(stack):
    """Calls keep coming while instance 2 stops; once it is gone, no call fails: nginx sends a request that
    finds it down to instance 1 (a refused connection never reached the app, so even a POST is retried).
    It stops an instance: the last test of the module."""
    with Caller(stack).running() as caller:
        caller.wait_for(12)
        stack.instances[1].stop()
        stopped_at = caller.wait_for(20)  # every call from here on started after the instance was gone

    calls = caller.calls
    remaining, gone = stack.upstreams
    assert caller.answered_by(calls[:12]) == {remaining, gone}
    after = calls[stopped_at:]
    failed = [call for call in after if call.status != 200]
    assert not failed, f"{failed}\n{stack.diagnostics()}"
    assert caller.answered_by(after) == {remaining}
    # Only a POST sent on a kept-alive connection just as the instance closed it may fail (nginx never resends it).
    failed_before = [call for call in calls[:stopped_at] if call.status != 200]
    assert all(call.kind == "chat" for call in failed_before), failed_before
