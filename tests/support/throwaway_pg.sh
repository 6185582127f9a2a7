#!/usr/bin/env bash
# A throwaway PostgreSQL for the tests (Debian's `postgresql` package): initdb in a temporary folder as an
# unprivileged user, a unix socket in that folder only (no TCP), password authentication (scram-sha-256).
#   throwaway_pg.sh start STATE   prints nothing; writes STATE (a shell file: PGDIR, CONNINFO, PASSWORD_FILE)
#   throwaway_pg.sh stop STATE    stops the server and removes its folder and STATE
#   throwaway_pg.sh restart STATE stops and starts it again (same data): "the database restarted"
# Exit 77 (skip) when PostgreSQL is not installed, unless CI is set: then it is an error.
set -euo pipefail
cmd=${1:?start|stop|restart}
state=${2:?state file}

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  if [ -n "${CI:-}" ]; then echo "throwaway_pg: PostgreSQL is not installed (./dev deps installs it)" >&2; exit 1; fi
  echo "SKIP: PostgreSQL is not installed (apt install postgresql; CI has it)" >&2
  exit 77
fi

# As root, the server runs as an unprivileged user (PostgreSQL refuses to run as root).
as_owner=()
if [ "$(id -u)" -eq 0 ]; then
  owner=postgres
  id -u "$owner" >/dev/null 2>&1 || owner=nobody
  as_owner=(runuser -u "$owner" --)
fi

pgctl() { "${as_owner[@]}" "$bin/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/log" "$@"; }

case "$cmd" in
start)
  PGDIR=$(mktemp -d /tmp/fleetconf-pg.XXXXXX)
  chmod 755 "$PGDIR"
  PASSWORD_FILE=$PGDIR/password
  head -c 18 /dev/urandom | base64 | tr -d '/+=' > "$PASSWORD_FILE"
  chmod 600 "$PASSWORD_FILE"
  cp "$PASSWORD_FILE" "$PGDIR/pwfile"
  [ ${#as_owner[@]} -eq 0 ] || chown "$owner" "$PGDIR" "$PGDIR/pwfile"
  "${as_owner[@]}" "$bin/initdb" -D "$PGDIR/data" -U fleetconf --pwfile="$PGDIR/pwfile" --auth-local=scram-sha-256 \
    --auth-host=reject -E UTF8 --locale=C.UTF-8 --no-instructions >"$PGDIR/initdb.log" 2>&1 ||
    { cat "$PGDIR/initdb.log" >&2; exit 1; }
  rm -f "$PGDIR/pwfile"
  pgctl -w -t 60 -o "-c listen_addresses='' -c unix_socket_directories='$PGDIR' -c max_connections=60" start >/dev/null ||
    { cat "$PGDIR/log" >&2; exit 1; }
  CONNINFO="host=$PGDIR dbname=postgres user=fleetconf"
  printf 'PGDIR=%q\nCONNINFO=%q\nPASSWORD_FILE=%q\nPGBIN=%q\n' "$PGDIR" "$CONNINFO" "$PASSWORD_FILE" "$bin" > "$state"
  ;;
stop)
  [ -f "$state" ] || exit 0
  # shellcheck disable=SC1090
  . "$state"
  pgctl -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$PGDIR" "$state"
  ;;
restart)
  # shellcheck disable=SC1090
  . "$state"
  pgctl -m immediate stop >/dev/null
  pgctl -w -t 60 -o "-c listen_addresses='' -c unix_socket_directories='$PGDIR' -c max_connections=60" start >/dev/null
  ;;
*) echo "throwaway_pg: unknown command $cmd" >&2; exit 2 ;;
esac
