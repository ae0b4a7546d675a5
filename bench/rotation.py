"""Benchmark: re-encrypt 100,000 connections with `manage.py rotate_encryption_key`; print rows/s and peak RSS.

Not a test. It builds a throwaway SQLite file (WAL, as served) in a temporary directory, bulk-inserts the
connections under key A, then runs the real command in a child process with FIELD_ENCRYPTION_KEY=B,A and
measures that child alone (wall time, peak resident memory), then confirms `--check` passes.
Target on the 2-core reference machine: 100,000 rows in at most 60 s, peak memory under 300 MB.

    .venv/bin/python bench/rotation.py [--rows 100000] [--batch-size 500]
"""

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
TARGET_SECONDS = 60
TARGET_RSS_MB = 300


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=500)
    options = parser.parse_args()
    key_a, key_b = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    with tempfile.TemporaryDirectory(prefix="bench-rotation-") as directory:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": "bench-secret-key-" + "x" * 40,
            "FIELD_ENCRYPTION_KEY": key_a,
            "DATABASE_URL": f"sqlite:///{directory}/bench.sqlite3",
        }
        started = time.monotonic()
        run([sys.executable, "manage.py", "migrate", "--verbosity", "0"], env)
        run([sys.executable, "-c", SEED, str(options.rows)], env)
        print(f"Prepared {options.rows:,} connections under key A in {time.monotonic() - started:.1f} s")

        env["FIELD_ENCRYPTION_KEY"] = f"{key_b},{key_a}"
        command = [
            sys.executable, "manage.py", "rotate_encryption_key", "--skip-checks", "--batch-size",
            str(options.batch_size),
        ]
        started = time.monotonic()
        child = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        output = child.stdout.read().decode()
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.monotonic() - started
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"rotate_encryption_key failed:\n{output}")
        peak_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
        check = run([sys.executable, "manage.py", "rotate_encryption_key", "--check", "--skip-checks"], env)

    print(output.strip().splitlines()[-2])
    print(check.strip().splitlines()[-1][:60] + "…")
    print(f"Rotation: {options.rows:,} rows in {seconds:.1f} s = {options.rows / seconds:,.0f} rows/s "
          f"(target ≤ {TARGET_SECONDS} s)")
    print(f"Peak memory (RSS) of the command: {peak_mb:.0f} MB (target < {TARGET_RSS_MB} MB)")
    if seconds > TARGET_SECONDS or peak_mb >= TARGET_RSS_MB:
        sys.exit("Target missed.")


def run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{' '.join(command[:4])} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


# Bulk insert through the ORM, so the rows are encrypted exactly as the application stores them.
SEED = """
import sys
import django
django.setup()
from connections.models import Connection
from teams.models import Team

rows = int(sys.argv[1])
team = Team.objects.default()
step = 5000
for start in range(0, rows, step):
    Connection.objects.bulk_create(
        Connection(
            name=f"bench-{number:06d}",
            team=team,
            provider="openai",
            auth_method="api_key",
            secrets={"api_key": f"sk-bench-{number:06d}-abcdefghijklmnopqrstuvwxyz0123456789"},
        )
        for number in range(start, min(start + step, rows))
    )
"""


if __name__ == "__main__":
    main()
