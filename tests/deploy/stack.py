"""The production stack on 127.0.0.1: Debian's nginx running deploy/nginx.conf, app instances, a throwaway PostgreSQL.

Nothing here imitates a part: nginx is the system's binary with Debian's own /etc/nginx/nginx.conf around the
shipped site file, the instances are started by bench/served.py's `serving()` (the command `make run` ends
with), and PostgreSQL is scripts/with-postgres.sh's throwaway server. Only addresses, ports and paths change,
by replacing the literal values deploy/nginx.conf marks for operators to adapt.
"""

import datetime
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx.conf"
DOCUMENTED_ENV_FILE = ROOT / "deploy" / "llm-connections.env.example"
DEBIAN_MAIN_CONF = Path("/etc/nginx/nginx.conf")
SERVER_NAME = "llm.example.com"  # deploy/nginx.conf's placeholder, kept: the test resolves it to 127.0.0.1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def nginx_binary() -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    assert found, "Debian's nginx is missing: `make nginx` (or apt-get install -y nginx) installs it"
    return found


def documented_settings() -> dict[str, str]:
    """The variables of deploy/llm-connections.env.example, the environment file docs/deployment.md installs."""
    lines = [line for line in DOCUMENTED_ENV_FILE.read_text().splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


# --- TLS ------------------------------------------------------------------------------------------------


def make_certificate(directory: Path, name: str = SERVER_NAME) -> Path:
    """A self-signed certificate for `name` as fullchain.pem and privkey.pem (the names the site file uses)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(mode=0o700)
    (directory / "fullchain.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private = directory / "privkey.pem"
    private.touch(mode=0o600)
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return directory / "fullchain.pem"


def trusting(certificate: Path) -> ssl.SSLContext:
    """A client context that trusts only the test's certificate (and checks the name, as browsers do)."""
    context = ssl.create_default_context(cafile=str(certificate))
    return context


# --- PostgreSQL -----------------------------------------------------------------------------------------


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """scripts/with-postgres.sh's server, kept up while the block runs; yields its URL.

    The script runs a command against a fresh server and removes it when the command ends: here the
    command prints the URL and waits for its standard input to close.
    """
    script = subprocess.Popen(
        [str(ROOT / "scripts" / "with-postgres.sh"), "sh", "-c", 'echo "$TEST_DATABASE_URL"; exec cat >/dev/null'],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        url = script.stdout.readline().strip()
        if not url.startswith("postgres://"):
            script.stdin.close()
            raise AssertionError(f"scripts/with-postgres.sh did not start a server:\n{script.stderr.read()}")
        yield url
    finally:
        if not script.stdin.closed:
            script.stdin.close()
        script.wait(timeout=60)


# --- nginx ----------------------------------------------------------------------------------------------


def replace(text: str, old: str, new: str, *, times: int) -> str:
    """`old` replaced by `new`, failing loudly when `old` does not occur exactly `times` times (the shipped
    file changed: the test must change with it rather than test something else)."""
    found = text.count(old)
    assert found == times, f"expected {times}× {old!r} in the configuration, found {found}"
    return text.replace(old, new)


def replace_pattern(text: str, pattern: str, new: str, *, times: int) -> str:
    result, found = re.subn(pattern, new, text, flags=re.MULTILINE)
    assert found == times, f"expected {times}× /{pattern}/ in the configuration, found {found}"
    return result


@dataclass
class NginxPaths:
    directory: Path
    https_port: int
    http_port: int
    upstreams: list[str]  # host:port of each app instance
    certificates: Path
    static_root: Path

    @property
    def access_log(self) -> Path:
        return self.directory / "access.log"

    @property
    def error_log(self) -> Path:
        return self.directory / "error.log"


def render_site(paths: NginxPaths) -> str:
    """deploy/nginx.conf with this machine's ports and paths instead of the marked production values."""
    text = SITE.read_text()
    text = replace(text, "server 10.0.0.11:5000 ", f"server {paths.upstreams[0]} ", times=1)
    text = replace(text, "server 10.0.0.12:5000 ", f"server {paths.upstreams[1]} ", times=1)
    for name in ("fullchain.pem;", "privkey.pem;"):
        text = replace(text, f" /etc/ssl/llm-connections/{name}", f" {paths.certificates}/{name}", times=1)
    text = replace(text, "alias /srv/llmc/staticfiles/;", f"alias {paths.static_root}/;", times=1)
    text = replace(text, "access_log /var/log/nginx/llm-connections.access.log ", f"access_log {paths.access_log} ",
                   times=2)
    # 127.0.0.1 only: IPv6 listeners go, IPv4 ones get the test's ports.
    text = replace_pattern(text, r"^[ \t]*listen \[::\]:\d+.*\n", "", times=3)
    text = replace_pattern(text, r"listen 443\b", f"listen 127.0.0.1:{paths.https_port}", times=2)
    text = replace_pattern(text, r"listen 80\b", f"listen 127.0.0.1:{paths.http_port}", times=1)
    return text


def render_main(paths: NginxPaths, site: Path) -> str:
    """Debian's /etc/nginx/nginx.conf including the site as sites-enabled would, with the pid file, logs and
    temporary files in the test's directory (and no other site)."""
    text = DEBIAN_MAIN_CONF.read_text()
    text = replace_pattern(text, r"^pid [^;]+;", f"pid {paths.directory}/nginx.pid;", times=1)
    text = replace_pattern(text, r"^error_log [^;]+;", f"error_log {paths.error_log};", times=1)
    text = replace_pattern(text, r"^([ \t]*)access_log [^;]+;", rf"\1access_log {paths.directory}/other.log;", times=1)
    text = replace_pattern(text, r"^[ \t]*include /etc/nginx/conf\.d/\*\.conf;\n", "", times=1)
    temporary = "".join(f"\t{kind}_temp_path {paths.directory}/{kind};\n"
                        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    text = replace_pattern(text, r"^[ \t]*include /etc/nginx/sites-enabled/\*;\n", f"{temporary}\tinclude {site};\n",
                           times=1)
    return text


@contextmanager
def running_nginx(paths: NginxPaths) -> Iterator[subprocess.Popen]:
    site = paths.directory / "llm-connections.conf"
    site.write_text(render_site(paths))
    main = paths.directory / "nginx.conf"
    main.write_text(render_main(paths, site))
    command = [nginx_binary(), "-p", str(paths.directory), "-c", str(main)]
    checked = subprocess.run([*command, "-t"], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([*command, "-g", "daemon off;"], stdout=subprocess.DEVNULL,
                               stderr=open(paths.directory / "nginx.stderr", "wb"))
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", paths.https_port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, error_output(paths)
                time.sleep(0.05)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=10)


def error_output(paths: NginxPaths) -> str:
    parts = [paths.directory / "nginx.stderr", paths.error_log]
    return "\n".join(part.read_text(errors="replace") for part in parts if part.exists())


# --- nginx's access log ---------------------------------------------------------------------------------

LOG_LINE = re.compile(r'"deploy-test (?P<marker>\S+)" upstream=(?P<upstream>.*?) upstream_status=(?P<status>.*?) '
                      r"upstream_time=")


@dataclass
class Logged:
    upstreams: list[str]  # every instance nginx tried, in order ("-" when nginx answered itself)
    statuses: list[str]

    @property
    def answered_by(self) -> str:
        return self.upstreams[-1]


def logged(access_log: Path, marker: str, seconds: float = 10) -> Logged:
    """The access log's line for the request sent with `User-Agent: deploy-test <marker>`. nginx writes it
    as the request ends, which may be a moment after the client has the answer: wait for it."""
    deadline = time.monotonic() + seconds
    while True:
        text = access_log.read_text() if access_log.exists() else ""
        for match in LOG_LINE.finditer(text):
            if match["marker"] == marker:
                return Logged(match["upstream"].split(", "), match["status"].split(", "))
        assert time.monotonic() < deadline, f"no access log line for {marker}:\n{text[-3000:]}"
        time.sleep(0.02)
