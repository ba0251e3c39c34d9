#!/usr/bin/env bash
# Starts a throw-away PostgreSQL cluster on 127.0.0.1 for the tests, from
# Debian's package, as the `postgres` user (initdb refuses root), in a
# temporary directory, and prints the URL to export:
#
#   export KEYSENTRY_TEST_PG_URL=$(bash .ci/postgres.sh start [PORT|auto])
#   bash .ci/postgres.sh stop DIR
#   bash .ci/postgres.sh resume DIR PORT
#
# The tests create a database of their own per test on it; the test that
# stops and restarts the server under a daemon starts a cluster of its own
# with this same script.
set -euo pipefail

bindir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
[ -n "$bindir" ] && [ -x "$bindir/initdb" ] \
    || { echo "postgres.sh: no PostgreSQL server found under /usr/lib/postgresql; apt-get install postgresql" >&2; exit 1; }

as_postgres() {
    if [ "$(id -u)" -eq 0 ]; then
        setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"
    else
        "$@"
    fi
}

# KEYSENTRY_PG_TLS_DIR=DIR (holding server.crt and server.key) starts the
# server with TLS on (the store's TLS test).
tls_opts=""
if [ -n "${KEYSENTRY_PG_TLS_DIR:-}" ]; then
    tls_opts="-c ssl=on -c ssl_cert_file=$KEYSENTRY_PG_TLS_DIR/server.crt -c ssl_key_file=$KEYSENTRY_PG_TLS_DIR/server.key"
fi

case "${1:-start}" in
start)
    port=${2:-55432}
    if [ "$port" = auto ]; then
        port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    fi
    dir=$(mktemp -d /tmp/keysentry-pg.XXXXXX)
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    as_postgres "$bindir/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log" >&2; exit 1; }
    as_postgres "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off $tls_opts" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    echo "postgres://postgres@127.0.0.1:$port/postgres?sslmode=disable"
    # Where the cluster lives, for `stop` and `resume`.
    echo "$dir" >"/tmp/keysentry-pg-$port.dir"
    ;;
resume)
    # Starts a stopped cluster again on its port (the restart test).
    dir=${2:?usage: postgres.sh resume DIR PORT}
    port=${3:?usage: postgres.sh resume DIR PORT}
    as_postgres "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=300 -c fsync=off" start >/dev/null \
        || { cat "$dir/server.log" >&2; exit 1; }
    ;;
stop)
    dir=${2:?usage: postgres.sh stop DIR}
    as_postgres "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    ;;
*)
    echo "usage: postgres.sh start [PORT] | stop DIR | resume DIR PORT" >&2
    exit 2
    ;;
esac
