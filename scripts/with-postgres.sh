#!/usr/bin/env bash
# Run a command beside a throwaway PostgreSQL server (Debian's package), with
# LB_TEST_DATABASE_URL naming its database. The server lives in a temporary
# directory on a free loopback port and is stopped and removed afterwards.
set -euo pipefail

find_initdb() { ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true; }

initdb=$(find_initdb)
if [ -z "$initdb" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "with-postgres: installing Debian's postgresql package" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
  initdb=$(find_initdb)
fi
if [ -z "$initdb" ]; then
  echo "with-postgres: PostgreSQL is not installed, so the PostgreSQL pass did NOT run" \
       "(apt-get install postgresql)" >&2
  [ -n "${CI:-}" ] && exit 1  # in CI a missing pass is a failure, not a notice
  exit 0
fi

bin=$(dirname "$initdb")
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
as_owner=()
if [ "$(id -u)" = 0 ]; then  # initdb refuses to run as root
  chown postgres "$dir"
  as_owner=(runuser -u postgres --)
fi
stop() {
  "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$dir"
}
trap stop EXIT

"${as_owner[@]}" "$bin/initdb" -D "$dir/data" -A trust -U postgres >/dev/null
# fsync off: a test database need not survive a power cut, and the suite runs faster.
"${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
  -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null
"$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -c "CREATE DATABASE codexlb_test" >/dev/null

echo "with-postgres: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port" >&2
LB_TEST_DATABASE_URL="postgresql://postgres@127.0.0.1:$port/codexlb_test" "$@"
