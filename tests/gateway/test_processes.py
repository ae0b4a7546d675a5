"""Two server processes started as `make run` starts them, sharing one SQLite database: a key rotated
through one is used by the very next call through the other (no per-process cache serves an old key)."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from bench.served import server_command
from tests.conftest import PLANTED_KEY
from tests.fakes.openai import FakeOpenAI

ROOT = Path(__file__).resolve().parents[2]
ROTATED_KEY = "sk-rotated-in-process-a-0123456789"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def environment(tmp_path) -> dict[str, str]:
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ENV_FILE": str(tmp_path / "absent.env"),
        "SECRET_KEY": "two-process-test-secret-key-long-enough-0123456789",
        "FIELD_ENCRYPTION_KEY": "Ju6CElcGyMt7kuiADmOZZnQFNSAKFe27lQ9O8mKb5F4=",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        "ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
        "DJANGO_SUPERUSER_PASSWORD": "two-process-admin-pw",
        "WEB_CONCURRENCY": "1",
    }
    for command in (["migrate", "--noinput"], ["create_default_admin"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True)
    return env


@pytest.fixture
def token(environment) -> str:
    result = subprocess.run([sys.executable, "manage.py", "create_api_token", "admin"], cwd=ROOT, env=environment,
                            check=True, capture_output=True, text=True)
    return result.stdout.strip()


@pytest.fixture
def start_server(environment, tmp_path):
    processes = []

    def start() -> str:
        port = free_port()
        log = open(tmp_path / f"server-{port}.log", "w")
        process = subprocess.Popen(
            server_command(),
            cwd=ROOT, env={**environment, "PORT": str(port)}, stdout=log, stderr=subprocess.STDOUT,
        )
        processes.append(process)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    return url
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError((tmp_path / f"server-{port}.log").read_text())

    yield start
    for process in processes:
        process.terminate()
        process.wait(timeout=10)


def test_a_key_rotated_through_one_process_is_used_by_the_next_call_through_another(start_server, token):
    with FakeOpenAI(keys={PLANTED_KEY, ROTATED_KEY}) as fake:
        server_a, server_b = start_server(), start_server()
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{server_a}/api/v1/connections/", headers=auth, json={
            "name": "shared", "provider": "openai", "auth_method": "api_key",
            "secrets": {"api_key": PLANTED_KEY}, "config": {"base_url": fake.base_url}})
        assert created.status_code == 201, created.text
        assert httpx.post(f"{server_a}/api/v1/endpoints/", headers=auth, json={
            "name": "chat", "connection": "shared", "model": "gpt-4o-mini", "task": "chat"}).status_code == 201
        chat = {"model": "chat", "messages": [{"role": "user", "content": "Hi"}]}

        with httpx.Client(base_url=server_b, headers=auth) as through_b:  # keep-alive: same worker process
            assert through_b.post("/gateway/v1/chat/completions", json=chat).status_code == 200
            rotated = httpx.patch(f"{server_a}/api/v1/connections/shared/", headers=auth,
                                  json={"secrets": {"api_key": ROTATED_KEY}})
            assert rotated.status_code == 200
            assert through_b.post("/gateway/v1/chat/completions", json=chat).status_code == 200

        assert fake.presented_keys() == [PLANTED_KEY, ROTATED_KEY]
