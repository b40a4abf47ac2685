#!/usr/bin/env bash
# Makes sure a PostgreSQL server answers where the tests and CI expect one:
# 127.0.0.1:${R2TA_PG_PORT:-5432}, trust authentication, roles postgres and root,
# a database named `test`.
#
# Does nothing when a server already answers there. Otherwise installs Debian's
# `postgresql` package (apt-get) if no PostgreSQL binaries are present, creates
# a throwaway cluster in ${R2TA_PG_DIR:-/tmp/r2ta-postgres-<port>} and starts it
# (log: <dir>/server.log; stop it with `pg_ctl -D <dir> stop`).
#
# For development machines and CI only: trust authentication lets any local
# user in as any role. A team's shared server is set up by its administrator
# and reached through R2TA_DATABASE_URL.
set -euo pipefail

HOST=127.0.0.1
PORT="${R2TA_PG_PORT:-5432}"
PGDIR="${R2TA_PG_DIR:-/tmp/r2ta-postgres-$PORT}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"

answers() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -q -h "$HOST" -p "$PORT"
  else
    (exec 3<>"/dev/tcp/$HOST/$PORT") 2>/dev/null
  fi
}

if answers; then
  echo "PostgreSQL already answers at $HOST:$PORT"
  exit 0
fi

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }
BIN="$(bindir)"
if [ -z "$BIN" ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "no PostgreSQL found and no apt-get: install PostgreSQL with your system's package manager" >&2
    exit 1
  fi
  echo "installing Debian package postgresql"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
  BIN="$(bindir)"
  [ -n "$BIN" ] || { echo "apt-get installed postgresql but no /usr/lib/postgresql/*/bin appeared" >&2; exit 1; }
fi

# initdb and postgres refuse to run as root: run them as the `postgres` user the package creates.
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

mkdir -p "$PGDIR"
[ "$(id -u)" -eq 0 ] && chown postgres: "$PGDIR"
chmod 700 "$PGDIR"
if [ ! -f "$PGDIR/PG_VERSION" ]; then
  echo "creating a PostgreSQL cluster in $PGDIR"
  as_owner "$BIN/initdb" -D "$PGDIR" -U postgres --auth=trust -E UTF8 --locale=C >/dev/null
fi
echo "starting PostgreSQL at $HOST:$PORT (log: $PGDIR/server.log)"
as_owner "$BIN/pg_ctl" -D "$PGDIR" -l "$PGDIR/server.log" -w -t 60 \
  -o "-c listen_addresses=$HOST -p $PORT -k $PGDIR" start >/dev/null

PSQL=("$BIN/psql" -h "$HOST" -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -q -d postgres)
"${PSQL[@]}" -c "DO \$\$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'root') THEN CREATE ROLE root SUPERUSER LOGIN; END IF; END \$\$;"
if [ -z "$("${PSQL[@]}" -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" ]; then
  "${PSQL[@]}" -c "CREATE DATABASE test"
fi
answers && echo "PostgreSQL answers at $HOST:$PORT"
