"""The app served in a child process exactly as `make run` serves it (bench/served.py server_command())."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.served import server_command

ROOT = Path(__file__).resolve().parents[2]
FIELD_KEY = "Ju6CElcGyMt7kuiADmOZZnQFNSAKFe27lQ9O8mKb5F4="


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def served_environment(database_url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Only what a deployment sets, so nothing leaks in from the test process."""
    return {
        "PATH": os.environ["PATH"],
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "tests.faults.server_settings",
        "ENV_FILE": str(tmp_path / "absent.env"),
        "SECRET_KEY": "faults-test-secret-key-that-is-long-enough-0123456789",
        "FIELD_ENCRYPTION_KEY": FIELD_KEY,
        "DATABASE_URL": database_url,
        "ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
        "WEB_CONCURRENCY": "1",
        **extra,
    }


def manage(env: dict[str, str], *args: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


class Served:
    """One server (gunicorn and its workers); `url` answers once any request gets an HTTP answer."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "w")
        self.process = subprocess.Popen(
            server_command(),
            cwd=ROOT, env={**env, "PORT": str(self.port)}, stdout=self._log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/healthz", timeout=10)  # up once it answers: a 503 too
                return
            except httpx.TransportError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the server did not start:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._log.close()
