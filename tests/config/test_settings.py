"""Start-up configuration: keys from the environment or .env, loud failures, the make-run bootstrap."""

import os
import secrets
import stat
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model
from django.core.management import call_command

from config.envfile import create_env_file
from tests.deploy.stack import documented_settings

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = Fernet.generate_key().decode()


def manage(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """Run manage.py with only the given variables, reading no .env file."""
    environment = {"PATH": os.environ["PATH"], "DJANGO_SETTINGS_MODULE": "config.settings",
                   "ENV_FILE": str(cwd / "absent.env"), "DATABASE_URL": f"sqlite:///{cwd / 'db.sqlite3'}", **env}
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], cwd=cwd, env=environment,
                          capture_output=True, text=True, timeout=60)


def test_a_missing_encryption_key_stops_start_up_with_advice(tmp_path):
    result = manage("check", cwd=tmp_path, DEBUG="false", SECRET_KEY="s" * 50)
    assert result.returncode == 1
    assert "FIELD_ENCRYPTION_KEY is missing" in result.stderr and "make run" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_malformed_key_is_named_by_position(tmp_path):
    result = manage("check", cwd=tmp_path, SECRET_KEY="s" * 50, FIELD_ENCRYPTION_KEY=f"{GOOD_KEY},not-a-key")
    assert result.returncode == 1
    assert "key number 2 of 2 is not a valid Fernet key" in result.stderr
    assert "not-a-key" not in result.stderr


def test_a_missing_secret_key_stops_start_up(tmp_path):
    result = manage("check", cwd=tmp_path, FIELD_ENCRYPTION_KEY=GOOD_KEY)
    assert result.returncode == 1 and "SECRET_KEY is missing" in result.stderr


@pytest.mark.parametrize("days", ["0", "3651", "ninety"])
def test_a_key_max_age_outside_1_to_3650_days_stops_start_up(tmp_path, days):
    result = manage("check", cwd=tmp_path, SECRET_KEY="s" * 50, FIELD_ENCRYPTION_KEY=GOOD_KEY, KEY_MAX_AGE_DAYS=days)
    assert result.returncode == 1 and "KEY_MAX_AGE_DAYS must be a whole number" in result.stderr
    assert "Traceback" not in result.stderr


def test_good_keys_start_and_a_comma_separated_list_is_read_as_a_list(tmp_path):
    second = Fernet.generate_key().decode()
    result = manage("shell", "--no-imports", "-c", "from django.conf import settings; print(len(settings.FIELD_ENCRYPTION_KEY))",
                    cwd=tmp_path, SECRET_KEY="s" * 50, FIELD_ENCRYPTION_KEY=f"{GOOD_KEY}, {second}")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2"


def test_the_env_file_is_created_once_with_mode_0600(tmp_path):
    env_file = tmp_path / ".env"
    assert create_env_file(env_file) is True
    text = env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    key = next(line.split("=", 1)[1] for line in text.splitlines() if line.startswith("FIELD_ENCRYPTION_KEY="))
    Fernet(key)
    assert create_env_file(env_file) is False
    assert env_file.read_text() == text  # never overwritten
    other = tmp_path / "other.env"
    create_env_file(other)
    assert other.read_text() != text  # fresh random keys each time


def test_the_default_admin_is_created_once_with_a_printed_password(db, monkeypatch, client):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    out = StringIO()
    call_command("create_default_admin", stdout=out)
    line = out.getvalue().strip()
    assert line.startswith("Superuser admin created with password: ")
    password = line.rsplit(" ", 1)[1]
    assert client.login(username="admin", password=password)
    again = StringIO()
    call_command("create_default_admin", stdout=again)
    assert again.getvalue() == "" and get_user_model().objects.count() == 1


def test_the_default_admin_takes_the_password_from_the_environment(db, monkeypatch, client):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "chosen-password-42")
    out = StringIO()
    call_command("create_default_admin", stdout=out)
    assert "chosen-password-42" not in out.getvalue()
    assert client.login(username="admin", password="chosen-password-42")


def test_an_existing_users_password_is_never_changed(db, django_user_model, monkeypatch, client):
    django_user_model.objects.create_user("alice", password="alice-password-1")
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "other")
    call_command("create_default_admin", stdout=StringIO())
    assert not django_user_model.objects.filter(username="admin").exists()
    assert client.login(username="alice", password="alice-password-1")


def test_sqlite_runs_with_wal_and_a_busy_timeout(tmp_path):
    result = manage(
        "shell", "--no-imports", "-c",
        "from django.db import connection as c; cur = c.cursor(); cur.execute('PRAGMA journal_mode');"
        "print(cur.fetchone()[0]); cur.execute('PRAGMA busy_timeout'); print(cur.fetchone()[0])",
        cwd=tmp_path, SECRET_KEY="s" * 50, FIELD_ENCRYPTION_KEY=GOOD_KEY,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["wal", "20000"]


def test_keys_are_read_from_the_env_file_and_the_environment_wins(tmp_path):
    env_file = tmp_path / ".env"
    create_env_file(env_file)
    result = manage("check", cwd=tmp_path, ENV_FILE=str(env_file))
    assert result.returncode == 0, result.stderr
    result = manage("check", cwd=tmp_path, ENV_FILE=str(env_file), FIELD_ENCRYPTION_KEY="broken")
    assert result.returncode == 1 and "not a valid Fernet key" in result.stderr


def production_environment(tmp_path: Path) -> dict[str, str]:
    """The documented production case (DEBUG off, HTTPS on behind a proxy, a real host), with fresh
    random keys for the file's placeholders and a local database in place of its server (checks never connect)."""
    return {**documented_settings(), "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEY": Fernet.generate_key().decode(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}


def test_the_documented_environment_file_is_the_production_case():
    settings = documented_settings()
    assert {name: settings[name] for name in ("DEBUG", "HTTPS", "BEHIND_PROXY")} == {
        "DEBUG": "false", "HTTPS": "true", "BEHIND_PROXY": "true"}
    assert settings["DATABASE_URL"].startswith("postgres://")


def test_the_documented_environment_file_does_not_start_until_its_keys_are_replaced(tmp_path):
    placeholders = {**documented_settings(), "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    result = manage("check", cwd=tmp_path, **placeholders)
    assert result.returncode == 1 and "SECRET_KEY is missing or shorter than 32 characters" in result.stderr
    result = manage("check", cwd=tmp_path, **{**placeholders, "SECRET_KEY": secrets.token_urlsafe(50)})
    assert result.returncode == 1 and "FIELD_ENCRYPTION_KEY: key number 1 of 1 is not a valid" in result.stderr


def test_check_deploy_is_clean_in_production(tmp_path):
    result = manage("check", "--deploy", "--fail-level", "DEBUG", cwd=tmp_path, **production_environment(tmp_path))

    assert result.returncode == 0, result.stdout + result.stderr
    # The one silenced is axes.W002: its middleware is there, as a subclass (config/settings.py).
    assert result.stdout.strip() == "System check identified no issues (1 silenced)."
    assert result.stderr == ""


def test_check_deploy_does_warn_without_https(tmp_path):
    """The clean run above means something: the same check does see a weaker set-up."""
    result = manage("check", "--deploy", cwd=tmp_path, **{**production_environment(tmp_path), "HTTPS": "false"})

    assert "security.W008" in result.stderr and "security.W004" in result.stderr


SHOW_API_AND_PROXY_SETTINGS = (
    "from django.conf import settings; from rest_framework.settings import api_settings;"
    "from axes.helpers import get_client_ip_address; from django.test import RequestFactory;"
    "print([renderer.__name__ for renderer in api_settings.DEFAULT_RENDERER_CLASSES]);"
    "print(get_client_ip_address(RequestFactory().get('/', REMOTE_ADDR='10.0.0.2',"
    " HTTP_X_FORWARDED_FOR='8.8.8.8, 10.0.5.7')))"
)


@pytest.mark.parametrize(
    ("debug", "behind_proxy", "renderers", "login_address"),
    [
        ("false", "false", ["JSONRenderer"], "10.0.0.2"),
        ("true", "true", ["JSONRenderer", "BrowsableAPIRenderer"], "10.0.5.7"),
    ],
)
def test_the_browsable_api_only_with_debug_and_x_forwarded_for_only_behind_a_proxy(
    tmp_path, debug, behind_proxy, renderers, login_address
):
    result = manage("shell", "--no-imports", "-c", SHOW_API_AND_PROXY_SETTINGS, cwd=tmp_path, DEBUG=debug,
                    BEHIND_PROXY=behind_proxy, SECRET_KEY="s" * 50, FIELD_ENCRYPTION_KEY=GOOD_KEY)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [str(renderers), login_address]
