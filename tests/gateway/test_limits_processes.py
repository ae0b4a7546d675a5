"""Limits hold across server processes: two servers started as `make run` starts them, on one database (SQLite
file, and PostgreSQL), count one token's calls and tokens together."""

import os
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

    def start(self) -> str:
        port = free_port()
        log = open(self.log_dir / f"server-{port}.log", "w")
        self.processes.append(subprocess.Popen(server_command(), cwd=ROOT, env={**self.env, "PORT": str(port)},
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


def early_in_a_minute() -> None:
    """Start the counted calls at least 15 s before the minute ends, so they all fall in one minute window."""
    second = datetime.now(UTC).second
    if second > 45:
        time.sleep(61 - second)


def scenario(servers: TwoServers) -> None:
    with FakeOpenAI(keys={PLANTED_KEY}) as fake:
        server_a, server_b = servers.start(), servers.start()
        admin = {"Authorization": f"Bearer {manage(servers.env, 'create_api_token', 'admin')}"}
        assert httpx.post(f"{server_a}/api/v1/connections/", headers=admin, json={
            "name": "shared", "provider": "openai", "auth_method": "api_key",
            "secrets": {"api_key": PLANTED_KEY}, "config": {"base_url": fake.base_url}}).status_code == 201
        assert httpx.post(f"{server_a}/api/v1/endpoints/", headers=admin, json={
            "name": "chat", "connection": "shared", "model": "gpt-4o-mini", "task": "chat"}).status_code == 201
        rated = manage(servers.env, "create_api_token", "admin", "--scope", "gateway", "--requests-per-minute", "3")
        budgeted = manage(servers.env, "create_api_token", "admin", "--token-budget", "25", "--budget-period", "day")

        early_in_a_minute()
        rate_answers = [httpx.post(f"{server}/gateway/v1/chat/completions", json=CHAT,
                                   headers={"Authorization": f"Bearer {rated}"})
                        for server in (server_a, server_b, server_a, server_b)]
        budget_answers = [httpx.post(f"{server}/gateway/v1/chat/completions", json=CHAT,
                                     headers={"Authorization": f"Bearer {budgeted}"})
                          for server in (server_b, server_a, server_b, server_a)]

    assert [a.status_code for a in rate_answers] == [200, 200, 200, 429]
    assert rate_answers[3].json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(rate_answers[3].headers["retry-after"]) <= 60
    # 10 tokens a call, as the provider reports: 0, 10, 20 spent before the first three, 30 before the fourth.
    assert [a.status_code for a in budget_answers] == [200, 200, 200, 429]
    assert budget_answers[3].json()["error"]["code"] == "budget_exceeded"
    assert len(fake.requests) == 6


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
