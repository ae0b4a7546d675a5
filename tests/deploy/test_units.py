"""deploy/systemd/: the units parse and verify with systemd's own tool, keep their hardening, and start the
server with the command `make run` ends with (bench/served.py's server_command()). No unit is started here."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench.served import server_command

ROOT = Path(__file__).resolve().parents[2]
UNITS = ROOT / "deploy" / "systemd"
APP, MIGRATE = UNITS / "llm-connections.service", UNITS / "llm-connections-migrate.service"
INSTALLED_VENV = "/srv/llmc/app/.venv/bin/"
ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(ANALYZE is None, reason="systemd-analyze is not installed")


def service_section(unit: Path) -> dict[str, list[str]]:
    """[Service]'s settings, each with every value it was given (systemd allows repeating a setting)."""
    values: dict[str, list[str]] = {}
    section = None
    for line in unit.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            name, value = line.split("=", 1)
            values.setdefault(name, []).append(value)
    return values


def with_this_venv(directory: Path) -> list[Path]:
    """Copies of the units whose commands point at this checkout's virtualenv (verify wants them to exist)."""
    copies = []
    for unit in (APP, MIGRATE):
        copy = directory / unit.name
        copy.write_text(unit.read_text().replace(INSTALLED_VENV, f"{Path(sys.executable).parent}/"))
        copies.append(copy)
    return copies


@needs_systemd_analyze
def test_the_units_verify_cleanly(tmp_path):
    result = subprocess.run([ANALYZE, "verify", *map(str, with_this_venv(tmp_path))], capture_output=True, text=True)

    assert result.returncode == 0 and result.stdout == result.stderr == "", result.stdout + result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("unit", [APP.name, MIGRATE.name])
def test_the_units_exposure_stays_low(tmp_path, unit):
    """systemd's own rating of the sandbox: at most 2.0 of 10 ("OK"; an unhardened service rates 9.6)."""
    copies = {copy.name: copy for copy in with_this_venv(tmp_path)}
    result = subprocess.run([ANALYZE, "security", "--offline=yes", "--threshold=20", str(copies[unit])],
                            capture_output=True, text=True)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr


def test_the_app_unit_starts_what_make_run_starts():
    command = server_command()
    service = service_section(APP)

    assert service["ExecStart"] == [" ".join([INSTALLED_VENV + Path(command[0]).name, *command[1:]])]
    assert service["WorkingDirectory"] == ["/srv/llmc/app"]


def test_both_units_run_as_the_service_user_with_the_same_settings_and_hardening():
    app, migrate = service_section(APP), service_section(MIGRATE)

    for service in (app, migrate):
        assert service["User"] == service["Group"] == ["llmc"]
        assert service["EnvironmentFile"][0] == "/etc/llm-connections/llm-connections.env"
        assert service["Environment"][0] == "ENV_FILE=/etc/llm-connections/llm-connections.env"
        for setting, value in {"NoNewPrivileges": "yes", "ProtectSystem": "strict", "ProtectHome": "yes",
                               "PrivateTmp": "yes", "CapabilityBoundingSet": "",
                               "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}.items():
            assert service[setting] == [value], setting
        assert "ReadWritePaths" not in service  # nothing on disk to write: the data is in PostgreSQL
    hardening = {name for name in app if name.startswith(("Protect", "Restrict", "Private", "SystemCall"))}
    assert hardening <= set(migrate)
    assert migrate["Type"] == ["oneshot"]
    assert migrate["ExecStart"] == [f"{INSTALLED_VENV}python manage.py migrate --noinput"]

