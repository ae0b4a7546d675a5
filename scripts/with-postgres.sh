#!/usr/bin/env bash
# Run a command against a throwaway PostgreSQL server: `scripts/with-postgres.sh <command...>`.
#
# Starts a fresh cluster (initdb, fsync off: the data is thrown away) on a free port of 127.0.0.1 in a
# temporary directory, runs the command with TEST_DATABASE_URL pointing at it, then always stops the
# server and removes the directory, whatever the command's outcome. Exits with the command's status.
# As root, the server runs as the `postgres` user (PostgreSQL refuses to run as root).
set -euo pipefail

if [ $# -eq 0 ]; then
    echo "usage: $0 <command...>" >&2
    exit 2
fi

# Debian puts the server binaries in /usr/lib/postgresql/<version>/bin, off the PATH; take the newest.
bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bindir" ] && command -v initdb >/dev/null; then
    bindir=$(dirname "$(command -v initdb)")
fi
if [ -z "$bindir" ] || [ ! -x "$bindir/initdb" ]; then
    echo "PostgreSQL server binaries not found: apt-get install -y postgresql" >&2
    exit 1
fi

as_server_user=()
if [ "$(id -u)" -eq 0 ]; then
    as_server_user=(runuser -u postgres --)
fi

dir=$(mktemp -d -t test-postgres.XXXXXX)
chmod 0755 "$dir"
[ ${#as_server_user[@]} -eq 0 ] || chown postgres: "$dir"
started=no

cleanup() {
    if [ "$started" = yes ]; then
        "${as_server_user[@]}" "$bindir/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

"${as_server_user[@]}" "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust --encoding=UTF8 --no-locale \
    >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }
started=yes
"${as_server_user[@]}" "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -o \
    "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
    start >/dev/null || { cat "$dir/server.log" >&2; exit 1; }

export TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
echo "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') on 127.0.0.1:$port (throwaway)" >&2
status=0
"$@" || status=$?
exit "$status"
