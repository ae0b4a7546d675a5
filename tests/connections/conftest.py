"""Running management commands as an operator does: `python manage.py ...` in a child process, on a real
SQLite file (WAL, as served), with the keys given explicitly in its environment."""

import json
import os
import select
import shutil
import sqlite3
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from connections.models import Connection
from tests.conftest import PLANTED_KEY

REPO = Path(__file__).resolve().parents[2]
KEY_A = settings.FIELD_ENCRYPTION_KEY[0]  # the test settings' key: what make_connection encrypts with
KEY_B = Fernet.generate_key().decode()  # the new key
KEY_C = Fernet.generate_key().decode()  # a key nobody configured


def command_env(db_path: Path, keys: list[str]) -> dict[str, str]:
    """Only what a deployment sets, so nothing leaks in from the test process's own settings."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": "subprocess-secret-key-that-is-long-enough-0123456789",
        "FIELD_ENCRYPTION_KEY": ",".join(keys),
        "DATABASE_URL": f"sqlite:///{db_path}",
    }


@dataclass
class Cli:
    """A throwaway database and the commands that run against it."""

    db_path: Path
    keys: list[str]

    def env(self, keys: list[str] | None = None) -> dict[str, str]:
        return command_env(self.db_path, keys or self.keys)

    def manage(
        self, *args: str, stdin: str = "", keys: list[str] | None = None, extra_env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env={**self.env(keys), **(extra_env or {})},
            input=stdin, capture_output=True, text=True, timeout=120,
        )

    def start(self, *args: str, keys: list[str] | None = None) -> subprocess.Popen:
        """The command running, as it runs from a terminal: Ctrl-C (SIGINT) interrupts it even when the test
        run itself was started with SIGINT ignored (in the background of a shell, or under nohup), which a
        child would otherwise inherit."""
        return subprocess.Popen(
            [sys.executable, "manage.py", *args],
            cwd=REPO, env=self.env(keys), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )

    def start_python(self, code: str, *argv: str, keys: list[str] | None = None) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-c", "import django; django.setup()\n" + code, *argv],
            cwd=REPO, env=self.env(keys), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )

    def python(self, code: str, *argv: str, keys: list[str] | None = None) -> subprocess.CompletedProcess:
        """Run Django code in a child process (seeding, editing through the service layer)."""
        result = subprocess.run(
            [sys.executable, "-c", "import django; django.setup()\n" + code, *argv],
            cwd=REPO, env=self.env(keys), capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return result

    # --- Looking at the file directly, without Django ---------------------------------------------------

    def raw_secrets(self) -> dict[str, str]:
        """name → stored ciphertext."""
        table = Connection._meta.db_table
        with sqlite3.connect(self.db_path) as db:
            return dict(db.execute(f'SELECT name, secrets FROM "{table}" ORDER BY id'))

    def decrypted_secrets(self, keys: list[str]) -> dict[str, dict]:
        """name → secrets dict; raises InvalidToken when some value does not decrypt with these keys."""
        crypter = MultiFernet([Fernet(key) for key in keys])
        return {name: json.loads(crypter.decrypt(raw.encode())) for name, raw in self.raw_secrets().items()}

    def count_under(self, key: str) -> int:
        fernet = Fernet(key)
        count = 0
        for raw in self.raw_secrets().values():
            try:
                fernet.decrypt(raw.encode())
            except InvalidToken:
                continue
            count += 1
        return count


def make_template(tmp_path_factory, name: str, seed: str, *argv: str) -> Path:
    path = tmp_path_factory.mktemp(name) / "db.sqlite3"
    cli = Cli(path, [KEY_A])
    result = cli.manage("migrate", "--verbosity", "0")
    assert result.returncode == 0, result.stderr
    cli.python(seed, *argv)
    return path


SEED = f"""
from django.contrib.auth import get_user_model
from connections.models import Connection
from connections.services import connection_save
from endpoints.models import Endpoint

def make(name, provider, method, secrets, config=None):
    connection = Connection(name=name, provider=provider, auth_method=method, config=config or {{}})
    connection.update_secrets(secrets)
    connection.full_clean()
    return connection_save(connection=connection, actor=None)

get_user_model().objects.create_user("alice", password="pw-alice-123456")
prod = make("openai-prod", "openai", "api_key", {{"api_key": "{PLANTED_KEY}"}})
Endpoint.objects.create(name="chat-main", task="chat").destinations.create(connection=prod, model="gpt-4o-mini", weight=100)
Endpoint.objects.create(name="embed-main", task="embeddings").destinations.create(
    connection=prod, model="text-embedding-3-small", weight=100)
make("bedrock-prod", "bedrock", "access_key",
     {{"aws_access_key_id": "AKIAPLANTED0000000000", "aws_secret_access_key": "{PLANTED_KEY}"}},
     {{"region": "us-east-1"}})
make("ollama-local", "ollama", "none", {{}})
"""

BULK_SEED = """
import sys
from connections.models import Connection
from teams.models import Team

rows = int(sys.argv[1])
team = Team.objects.default()
Connection.objects.bulk_create(
    Connection(name=f"bulk-{number:05d}", provider="openai", auth_method="api_key", team=team,
               secrets={"api_key": f"sk-bulk-{number:05d}-abcdefghijklmnopqrstuvwxyz"})
    for number in range(rows)
)
"""
BULK_ROWS = 3000


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory) -> Path:
    return make_template(tmp_path_factory, "seeded", SEED)


@pytest.fixture(scope="session")
def bulk_template(tmp_path_factory) -> Path:
    return make_template(tmp_path_factory, "bulk", BULK_SEED, str(BULK_ROWS))


@pytest.fixture
def cli(tmp_path, seeded_template) -> Cli:
    """A copy of a migrated database holding openai-prod (2 endpoints), bedrock-prod, ollama-local, alice."""
    shutil.copy(seeded_template, tmp_path / "db.sqlite3")
    return Cli(tmp_path / "db.sqlite3", [KEY_A])


@pytest.fixture
def bulk_cli(tmp_path, bulk_template) -> Cli:
    """A copy of a migrated database holding BULK_ROWS connections encrypted under KEY_A."""
    shutil.copy(bulk_template, tmp_path / "db.sqlite3")
    return Cli(tmp_path / "db.sqlite3", [KEY_A])


def run_on_terminal(cli: Cli, args: list[str], typed: list[str], keys: list[str] | None = None) -> tuple[int, str]:
    """Run a command on a pseudo-terminal, typing each entry after each prompt; return exit code and screen."""
    import pty

    pid, fd = pty.fork()
    if pid == 0:  # the child: become the command
        os.chdir(REPO)
        os.execve(sys.executable, [sys.executable, "manage.py", *args], cli.env(keys))
    screen = b""
    for entry in typed:
        screen += read_terminal(fd, until=b": ")
        os.write(fd, entry.encode() + b"\n")
    screen += read_terminal(fd)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), screen.decode(errors="replace")


def read_terminal(fd: int, until: bytes | None = None, timeout: float = 30) -> bytes:
    """Read what the command shows, up to a prompt ending with `until`, or until it exits."""
    data = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the command exited and closed the terminal
            break
        if not chunk:
            break
        data += chunk
        if until and data.rstrip(b" ").endswith(until.rstrip(b" ")):
            break
    return data
