"""The app served exactly as `make run` serves it, on a throwaway database, for the benches. Not a test.

`served_app()` prepares the database as `make run` does (migrate, create_default_admin, collectstatic),
issues an API token for the admin and starts `gunicorn --config config/gunicorn.py` (ASGI workers) on a free
loopback port with the keys in its environment (never the developer's `.env`); it always stops the server.
A bench may pass another server command (to compare servers) and a file for the server's output.
"""

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
ADMIN_PASSWORD = "bench-admin-password"
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
FIELD_ENCRYPTION_KEY = "Ju6CElcGyMt7kuiADmOZZnQFNSAKFe27lQ9O8mKb5F4="


@dataclass
class Served:
    url: str
    token: str
    pid: int
    env: dict[str, str]
    process: subprocess.Popen | None = field(default=None, repr=False)
    log: Path | None = None  # where the server's output goes, when serving() was given a file

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def stop(self) -> None:
        """Stop the server as its service manager would (SIGTERM: in-flight requests finish) and wait for it."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=30)


def app_env(directory: str, port: int, database_url: str | None = None) -> dict[str, str]:
    """The served app's whole environment: keys and a database of the bench's own, nothing from `.env`."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "ENV_FILE": f"{directory}/absent.env",
        "SECRET_KEY": "bench-secret-key-" + "x" * 40,
        "FIELD_ENCRYPTION_KEY": FIELD_ENCRYPTION_KEY,
        "DATABASE_URL": database_url or f"sqlite:///{directory}/bench.sqlite3",
        "ALLOWED_PRIVATE_HOSTS": "127.0.0.1",
        "DJANGO_SUPERUSER_PASSWORD": ADMIN_PASSWORD,
        "PORT": str(port),
    }


def manage(env: dict[str, str], *arguments: str) -> str:
    result = subprocess.run([sys.executable, "manage.py", *arguments], cwd=REPO, env=env, capture_output=True,
                            text=True)
    if result.returncode != 0:
        sys.exit(f"manage.py {arguments[0]} failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def prepare(env: dict[str, str]) -> str:
    """What `make run` does before serving, plus an API token for the admin (returned)."""
    manage(env, "migrate", "--noinput")
    manage(env, "create_default_admin")
    manage(env, "collectstatic", "--noinput", "--verbosity", "0")
    return manage(env, "create_api_token", "admin").strip()


def wait_for(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"{url} did not come up")


def server_command() -> list[str]:
    """The command `make run` ends with (run in REPO; it listens on HOST:PORT from the environment)."""
    gunicorn = Path(sys.executable).parent / "gunicorn"
    return [str(gunicorn), "--config", "config/gunicorn.py"]


@contextmanager
def serving(env: dict[str, str], token: str, command: list[str] | None = None,
            log: Path | None = None) -> Iterator[Served]:
    """The server started as `make run` starts it (server_command(), or `command`, run in REPO with `env`);
    stopped on exit. Its output goes to `log` when given, else nowhere."""
    output = open(log, "ab") if log is not None else subprocess.DEVNULL
    server = subprocess.Popen(command or server_command(), cwd=REPO, env=env, stdout=output,
                              stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{env['PORT']}"
        wait_for(f"{url}/healthz")
        yield Served(url=url, token=token, pid=server.pid, env=env, process=server, log=log)
    finally:
        server.terminate()
        server.wait(timeout=30)
        if log is not None:
            output.close()


def server_pids(pid: int) -> list[int]:
    """The server's whole process tree: the gunicorn master and its workers (and any process they started).

    Children are read from every thread of each process: a server that starts its workers from a thread
    other than its main one (granian) lists them only under that thread.
    """
    pids, index = [pid], 0
    while index < len(pids):
        for children in Path(f"/proc/{pids[index]}/task").glob("*/children"):
            try:
                pids += [int(child) for child in children.read_text().split()]
            except (FileNotFoundError, ProcessLookupError):
                pass  # a thread or process that just ended
        index += 1
    return pids


def rss_mb(pid: int) -> float:
    """Resident memory of the master and its workers, in MB (from /proc)."""
    total_kb = 0
    for each in server_pids(pid):
        for line in Path(f"/proc/{each}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total_kb += int(line.split()[1])
    return total_kb / 1024


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine_busy() -> tuple[int, int]:
    """Busy and total jiffies of the whole machine (/proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


QUIET_SHARE = 0.10  # busy share of one core under which the machine counts as quiet
QUIET_WAIT_SECONDS = 120


def wait_until_quiet() -> str:
    """Wait (up to QUIET_WAIT_SECONDS) until the machine has been quiet for two seconds in a row, so that work
    left by an earlier run (PostgreSQL's autovacuum after seeding, a server's last requests) is not timed as
    ours; says how long that took and what it saw."""
    cores, started, quiet, share = os.cpu_count() or 1, time.monotonic(), 0, 0.0
    while quiet < 2 and time.monotonic() - started < QUIET_WAIT_SECONDS:
        busy_before, total_before = machine_busy()
        time.sleep(1)
        busy_after, total_after = machine_busy()
        share = cores * (busy_after - busy_before) / max(1, total_after - total_before)
        quiet = quiet + 1 if share < QUIET_SHARE else 0
    state = "quiet" if quiet >= 2 else "still busy"
    return f"machine {state} after {time.monotonic() - started:.0f} s ({100 * share:.0f}% of a core busy)"


def logged_in_client(url: str) -> httpx.Client:
    """A browser-like session: logged in through the real login page, CSRF cookie and token in hand."""
    client = httpx.Client(base_url=url, timeout=30)
    token = CSRF.search(client.get("/accounts/login/").text).group(1)
    response = client.post("/accounts/login/", data={"csrfmiddlewaretoken": token, "username": "admin",
                                                     "password": ADMIN_PASSWORD})
    assert response.status_code == 302, f"login failed: {response.status_code}"
    return client
