"""`rotate_encryption_key` killed outright mid-run on PostgreSQL, then run again: nothing is lost.

The twin of TestInterruption in test_rotation.py (SQLite), run when the suite runs on PostgreSQL
(`make test`'s second run). The command runs as an operator runs it, in a child process, against its own
database created on the same server; a blocker holding one row's lock catches a batch mid-transaction.
"""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import psycopg
import pytest
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.db import connection as test_database

from connections.models import Connection

from .conftest import BULK_ROWS, BULK_SEED, KEY_A, KEY_B, REPO

pytestmark = [pytest.mark.postgres_only, pytest.mark.django_db]
BATCH = 100
TABLE = Connection._meta.db_table


class PostgresCli:
    """A database of its own on the test server, and the commands that run against it."""

    def __init__(self, dsn: str, url: str):
        self.dsn, self.url = dsn, url

    def env(self, keys: list[str]) -> dict[str, str]:
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "ENV_FILE": "/nonexistent/.env",
            "SECRET_KEY": "postgres-rotation-secret-key-long-enough-0123456789",
            "FIELD_ENCRYPTION_KEY": ",".join(keys),
            "DATABASE_URL": self.url,
        }

    def manage(self, *args: str, keys: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "manage.py", *args], cwd=REPO, env=self.env(keys),
                              capture_output=True, text=True, timeout=120)

    def start(self, *args: str, keys: list[str]) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "manage.py", *args], cwd=REPO, env=self.env(keys),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def connect(self, **options) -> psycopg.Connection:
        return psycopg.connect(self.dsn, **options)

    def raw_secrets(self) -> dict[str, str]:
        with self.connect() as db:
            return dict(db.execute(f'SELECT name, secrets FROM "{TABLE}" ORDER BY id').fetchall())

    def decrypted_secrets(self, keys: list[str]) -> dict[str, dict]:
        """name → secrets; raises InvalidToken when some value does not decrypt with these keys."""
        crypter = MultiFernet([Fernet(key) for key in keys])
        return {name: json.loads(crypter.decrypt(raw.encode())) for name, raw in self.raw_secrets().items()}

    def count_under(self, key: str) -> int:
        fernet, count = Fernet(key), 0
        for raw in self.raw_secrets().values():
            try:
                fernet.decrypt(raw.encode())
                count += 1
            except InvalidToken:
                pass
        return count


def server_dsn() -> dict:
    settings = test_database.settings_dict
    return {"host": settings["HOST"], "port": settings["PORT"] or 5432, "user": settings["USER"],
            "password": settings["PASSWORD"] or None}


@pytest.fixture
def pg_cli() -> Iterator[PostgresCli]:
    """A fresh database holding BULK_ROWS connections under KEY_A, dropped afterwards."""
    server = server_dsn()
    name = f"rotation_kill_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    auth = server["user"] + (f":{server['password']}" if server["password"] else "")
    cli = PostgresCli(psycopg.conninfo.make_conninfo(dbname=name, **server),
                      f"postgres://{auth}@{server['host']}:{server['port']}/{name}")
    try:
        migrated = cli.manage("migrate", "--noinput", "--verbosity", "0", keys=[KEY_A])
        assert migrated.returncode == 0, migrated.stderr
        seeded = subprocess.run([sys.executable, "-c", "import django; django.setup()\n" + BULK_SEED, str(BULK_ROWS)],
                                cwd=REPO, env=cli.env([KEY_A]), capture_output=True, text=True, timeout=120)
        assert seeded.returncode == 0, seeded.stderr
        yield cli
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for_progress(process: subprocess.Popen) -> None:
    line = process.stdout.readline()
    assert line.startswith("Checked "), line + process.stderr.read()


def backend_waiting_on_a_lock(cli: PostgresCli, timeout: float = 30) -> int:
    """The pid of the server backend (the rotation's) that waits for the blocker's row lock."""
    deadline = time.monotonic() + timeout
    with cli.connect(autocommit=True) as db:
        while time.monotonic() < deadline:
            row = db.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                             "AND wait_event_type = 'Lock'").fetchone()
            if row:
                return row[0]
            time.sleep(0.02)
    raise AssertionError("the rotation never waited for the locked row")


def wait_until_gone(cli: PostgresCli, pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    with cli.connect(autocommit=True) as db:
        while db.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the killed command's backend never ended"
            time.sleep(0.02)


def test_kill_9_inside_a_batch_rolls_that_batch_back_and_a_rerun_finishes(pg_cli):
    keys = [KEY_B, KEY_A]
    before = pg_cli.decrypted_secrets([KEY_A])
    blocker = pg_cli.connect()  # holds the last row of the fifth batch: the run stops inside that batch
    blocker.execute(f'SELECT id FROM "{TABLE}" WHERE id = (SELECT id FROM "{TABLE}" ORDER BY id '
                    f"OFFSET {5 * BATCH - 1} LIMIT 1) FOR UPDATE")
    process = pg_cli.start("rotate_encryption_key", "--batch-size", str(BATCH), "-v", "2", keys=keys)
    wait_for_progress(process)
    backend = backend_waiting_on_a_lock(pg_cli)  # 99 rows of batch five rewritten, not committed

    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    blocker.rollback()
    blocker.close()
    wait_until_gone(pg_cli, backend)

    assert process.returncode == -signal.SIGKILL
    assert pg_cli.decrypted_secrets(keys) == before  # every value readable, none changed
    assert pg_cli.count_under(KEY_B) == 4 * BATCH  # four whole batches committed; the fifth rolled back whole

    rerun = pg_cli.manage("rotate_encryption_key", "--batch-size", str(BATCH), keys=keys)
    check = pg_cli.manage("rotate_encryption_key", "--check", keys=keys)

    assert rerun.returncode == 0, rerun.stderr
    assert f"Re-encrypted {BULK_ROWS - 4 * BATCH} of {BULK_ROWS}" in rerun.stdout
    assert check.returncode == 0 and f"Under the first key:  {BULK_ROWS}" in check.stdout
    assert pg_cli.decrypted_secrets([KEY_B]) == before  # under the new key alone, every value as it was


def test_kill_9_at_any_moment_loses_nothing(pg_cli):
    keys = [KEY_B, KEY_A]
    before = pg_cli.decrypted_secrets([KEY_A])
    process = pg_cli.start("rotate_encryption_key", "--batch-size", "50", "-v", "2", keys=keys)
    wait_for_progress(process)
    process.send_signal(signal.SIGKILL)  # most likely inside a batch's transaction
    process.wait(timeout=30)

    assert pg_cli.decrypted_secrets(keys) == before
    assert 0 < pg_cli.count_under(KEY_B) < BULK_ROWS
    assert pg_cli.manage("rotate_encryption_key", keys=keys).returncode == 0
    assert pg_cli.decrypted_secrets([KEY_B]) == before
