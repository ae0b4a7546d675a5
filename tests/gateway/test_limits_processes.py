"""Limits hold across server processes: two servers started as `make run` starts them, on one database (SQLite
file, and PostgreSQL), count one token's calls and tokens together; a stopped server writes the tokens it held."""

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from bench.served import server_command
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI

from .test_processes import free_port

ROOT = Path(__file__).resolve().parents[2]
CHAT = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}


def manage(env: dict, *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


class TwoServers:
    def __init__(self, database_url: str, log_dir: Path):
        self.env = {
            "PATH": os.environ["PATH"],
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ENV_FILE": str(log_dir / "absent.env"),
            "SECRET_KEY": "two-process-limits-secret-key-long-enough-0123456789",
            "FIELD_ENCRYPTION_KEY": "Ju6CElcGyMt7kuiADmOZZnQFNSAKFe27lQ9O8mKb5F4=",
            "DATABASE_URL": database_url,
            "ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
            "DJANGO_SUPERUSER_PASSWORD": "two-process-admin-pw",
            "WEB_CONCURRENCY": "1",
            "ACCESS_LOG": "false",
        }
        self.log_dir = log_dir
        self.processes: list[subprocess.Popen] = []
        manage(self.env, "migrate", "--noinput")
        manage(self.env, "create_default_admin")

    def start(self, **settings: str) -> str:
        port = free_port()
        log = open(self.log_dir / f"server-{port}.log", "w")
        self.processes.append(subprocess.Popen(server_command(), cwd=ROOT,
                                               env={**self.env, "PORT": str(port), **settings},
                                               stdout=log, stderr=subprocess.STDOUT))
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError((self.log_dir / f"server-{port}.log").read_text())

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
            process.wait(timeout=10)

    def tokens_counted(self) -> int:
        """The tokens the database holds in budget windows (what every process reads at admission)."""
        query = "SELECT COALESCE(SUM(tokens), 0) FROM gateway_limitcounter WHERE period <> 'minute'"
        url = self.env["DATABASE_URL"]
        if url.startswith("sqlite:///"):
            with sqlite3.connect(url.removeprefix("sqlite:///")) as database:
                return database.execute(query).fetchone()[0]
        import psycopg

        with psycopg.connect(url) as database:
            return database.execute(query).fetchone()[0]

    def wait_for_tokens(self, tokens: int) -> None:
        """Until the serving processes' writers have written this many tokens (LIMITS_FLUSH_SECONDS after the
        calls' answers)."""
        deadline = time.monotonic() + 10
        while self.tokens_counted() < tokens and time.monotonic() < deadline:
            time.sleep(0.02)
        assert self.tokens_counted() == tokens


def early_in_a_minute() -> None:
    """Start the counted calls at least 15 s before the minute ends, so they all fall in one minute window."""
    second = datetime.now(UTC).second
    if second > 45:
        time.sleep(61 - second)


def create_endpoint(servers: TwoServers, server: str, fake: FakeOpenAI) -> None:
    admin = {"Authorization": f"Bearer {manage(servers.env, 'create_api_token', 'admin')}"}
    assert httpx.post(f"{server}/api/v1/connections/", headers=admin, json={
        "name": "shared", "provider": "openai", "auth_method": "api_key",
        "secrets": {"api_key": PLANTED_KEY}, "config": {"base_url": fake.base_url}}).status_code == 201
    assert httpx.post(f"{server}/api/v1/endpoints/", headers=admin, json={
        "name": "chat", "connection": "shared", "model": "gpt-4o-mini", "task": "chat"}).status_code == 201


def scenario(servers: TwoServers) -> None:
    with FakeOpenAI(keys={PLANTED_KEY}) as fake:
        server_a, server_b = servers.start(), servers.start()
        create_endpoint(servers, server_a, fake)
        rated = manage(servers.env, "create_api_token", "admin", "--scope", "gateway", "--requests-per-minute", "3")
        budgeted = manage(servers.env, "create_api_token", "admin", "--token-budget", "25", "--budget-period", "day")

        early_in_a_minute()
        rate_answers = [httpx.post(f"{server}/gateway/v1/chat/completions", json=CHAT,
                                   headers={"Authorization": f"Bearer {rated}"})
                        for server in (server_a, server_b, server_a, server_b)]
        budget_answers = []
        for server in (server_b, server_a, server_b, server_a):
            budget_answers.append(httpx.post(f"{server}/gateway/v1/chat/completions", json=CHAT,
                                             headers={"Authorization": f"Bearer {budgeted}"}))
            if budget_answers[-1].status_code == 200:
                # The other server sees the tokens once the one that served the call has written them.
                servers.wait_for_tokens(10 * len(budget_answers))

    assert [a.status_code for a in rate_answers] == [200, 200, 200, 429]
    assert rate_answers[3].json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(rate_answers[3].headers["retry-after"]) <= 60
    # 10 tokens a call, as the provider reports: 0, 10, 20 spent before the first three, 30 before the fourth.
    assert [a.status_code for a in budget_answers] == [200, 200, 200, 429]
    assert budget_answers[3].json()["error"]["code"] == "budget_exceeded"
    assert len(fake.requests) == 6


def test_a_stopped_server_writes_the_tokens_its_calls_spent(tmp_path):
    servers = TwoServers(f"sqlite:///{tmp_path / 'shared.sqlite3'}", tmp_path)
    try:
        with FakeOpenAI(keys={PLANTED_KEY}) as fake:
            server = servers.start(LIMITS_FLUSH_SECONDS="3600")  # only an admission or the shutdown writes them
            create_endpoint(servers, server, fake)
            budgeted = manage(servers.env, "create_api_token", "admin", "--token-budget", "1000")
            with httpx.Client(headers={"Authorization": f"Bearer {budgeted}"}) as client:
                for _ in range(3):
                    assert client.post(f"{server}/gateway/v1/chat/completions", json=CHAT).status_code == 200
            assert servers.tokens_counted() == 0  # far from the budget: admitted on the process's first reading
            servers.stop()
    finally:
        servers.stop()

    assert servers.tokens_counted() == 30


def test_two_server_processes_on_one_sqlite_file_count_together(tmp_path):
    servers = TwoServers(f"sqlite:///{tmp_path / 'shared.sqlite3'}", tmp_path)
    try:
        scenario(servers)
    finally:
        servers.stop()


@pytest.mark.postgres_only
@pytest.mark.django_db
def test_two_server_processes_on_postgresql_count_together(tmp_path):
    import psycopg
    from django.db import connection

    server_url = os.environ["TEST_DATABASE_URL"]
    name = f"limits_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        servers = TwoServers(server_url.rsplit("/", 1)[0] + f"/{name}", tmp_path)
        try:
            scenario(servers)
        finally:
            servers.stop()
    finally:
        connection.close()
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
