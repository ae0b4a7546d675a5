"""Usage as the server records it: gunicorn's two workers add up in /metrics, and a stopped server writes the
calls it still held before it exits."""

import re
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.served import app_env, server_command
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def manage(env: dict, *arguments: str) -> str:
    return subprocess.run([sys.executable, "manage.py", *arguments], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout


class Servers:
    """Servers started as `make run` starts them, each with a connection and an endpoint calling a fake OpenAI."""

    def __init__(self, tmp_path: Path, fake: FakeOpenAI):
        self.tmp_path, self.fake, self.processes = tmp_path, fake, []

    def start(self, **settings: str) -> tuple[str, str, dict]:
        tmp_path, fake = self.tmp_path, self.fake
        env = {**app_env(str(tmp_path), free_port()), "WEB_CONCURRENCY": "2",
               "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "ACCESS_LOG": "false", **settings}
        manage(env, "migrate", "--noinput")
        manage(env, "create_default_admin")
        token = manage(env, "create_api_token", "admin").strip()
        log = open(tmp_path / "server.log", "a")
        process = subprocess.Popen(server_command(), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.processes.append(process)
        url = f"http://127.0.0.1:{env['PORT']}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        auth = {"Authorization": f"Bearer {token}"}
        assert httpx.post(f"{url}/api/v1/connections/", headers=auth, json={
            "name": "prod", "provider": "openai", "auth_method": "api_key", "secrets": {"api_key": PLANTED_KEY},
            "config": {"base_url": fake.base_url}}).status_code == 201
        assert httpx.post(f"{url}/api/v1/endpoints/", headers=auth, json={
            "name": "chat", "connection": "prod", "model": "gpt-4o-mini", "task": "chat"}).status_code == 201
        return url, token, env

    def stop(self) -> None:
        """As the service manager stops it: SIGTERM, calls in progress finish, then the workers exit."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)


@pytest.fixture
def served(tmp_path):
    with FakeOpenAI(keys={PLANTED_KEY}) as fake:
        servers = Servers(tmp_path, fake)
        yield servers
        servers.stop()


def recorded_calls(env: dict) -> int:
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as database:
        return database.execute("SELECT COUNT(*) FROM usage_usagerecord").fetchone()[0]


def workers_that_counted(metrics_dir: Path) -> set[str]:
    return {match.group(1) for path in metrics_dir.glob("counter_*.db")
            if (match := re.fullmatch(r"counter_(\d+)\.db", path.name))}


def test_the_workers_counts_add_up_in_metrics(served, tmp_path):
    url, token, env = served.start(USAGE_FLUSH_CALLS="1")  # each call written (and counted) at once
    calls = 0
    while len(workers_that_counted(tmp_path / "metrics")) < 2 and calls < 400:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as fresh:  # a new connection
            assert fresh.post("/gateway/v1/chat/completions", json=CHAT).status_code == 200
        calls += 1
        time.sleep(0.02)  # the writer counts the call a moment after its answer
    assert len(workers_that_counted(tmp_path / "metrics")) == 2, "every call went to the same worker"
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
        total = sum(sample.value for family in text_string_to_metric_families(text)
                    for sample in family.samples if sample.name == "llmc_gateway_calls_total")
        if total == calls:
            break
        time.sleep(0.1)
    assert total == calls


def test_a_stopped_server_writes_the_calls_it_held(served):
    url, token, env = served.start(USAGE_FLUSH_SECONDS="3600", USAGE_FLUSH_CALLS="100000")  # only shutdown writes
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}) as client:
        for _ in range(5):
            assert client.post("/gateway/v1/chat/completions", json=CHAT).status_code == 200
    assert recorded_calls(env) == 0
    served.stop()
    assert recorded_calls(env) == 5
