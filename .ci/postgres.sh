#!/usr/bin/env bash
# Start or stop a throwaway PostgreSQL cluster for the PostgresSink tests (tests/postgres).
#
#   .ci/postgres.sh start   install Debian's postgresql if missing, initdb a cluster under
#                           $PG_DIR (default /tmp/keyapi-async-pg-$PG_PORT), start it on
#                           127.0.0.1:$PG_PORT (default 5439) only, trust auth on loopback
#                           only, create the database "keyapi_test", and print the line to
#                           export: KEYAPI_TEST_POSTGRES_DSN=postgresql://...
#   .ci/postgres.sh stop    stop it (fast shutdown) and remove the cluster directory
#
# PostgreSQL refuses to run as root: as root, the server runs as the "postgres" user that
# the Debian package creates (runuser). The tests read KEYAPI_TEST_POSTGRES_DSN; without it
# they start their own cluster the same way (tests/postgres/conftest.py), and skip when the
# binaries are not installed.
set -euo pipefail

PORT="${PG_PORT:-5439}"
DIR="${PG_DIR:-/tmp/keyapi-async-pg-$PORT}"
DB="keyapi_test"
DSN="postgresql://postgres@127.0.0.1:$PORT/$DB"

bindir() {
    # Debian keeps the server binaries out of PATH, under /usr/lib/postgresql/VERSION/bin.
    local found
    found=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -n "$found" ] && [ -x "$found/initdb" ]; then
        echo "$found"
    elif command -v initdb >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
    fi
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start() {
    local bin
    bin=$(bindir)
    if [ -z "$bin" ]; then
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql
        bin=$(bindir)
    fi
    if as_owner "$bin/pg_isready" -q -h 127.0.0.1 -p "$PORT" -d "$DB" 2>/dev/null; then
        echo "postgres already answering on 127.0.0.1:$PORT" >&2
        echo "KEYAPI_TEST_POSTGRES_DSN=$DSN"
        return
    fi
    mkdir -p "$DIR"
    if [ "$(id -u)" = 0 ]; then chown postgres: "$DIR"; fi
    if [ ! -f "$DIR/data/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$DIR/data" -U postgres -E UTF8 --locale=C.UTF-8 \
            --auth=trust >"$DIR/initdb.log" 2>&1 || {
            cat "$DIR/initdb.log" >&2
            exit 1
        }
        # Trust, but only over the cluster's own socket directory and 127.0.0.1.
        printf '%s\n' "local all all trust" "host all all 127.0.0.1/32 trust" \
            | as_owner tee "$DIR/data/pg_hba.conf" >/dev/null
    fi
    as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR" start >/dev/null || {
        echo "postgres did not start; see $DIR/postgres.log" >&2
        exit 1
    }
    as_owner "$bin/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$DB" 2>/dev/null || true
    echo "KEYAPI_TEST_POSTGRES_DSN=$DSN"
}

stop() {
    local bin
    bin=$(bindir)
    if [ -n "$bin" ] && [ -f "$DIR/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null \
            && echo "postgres on 127.0.0.1:$PORT stopped" >&2
    fi
    rm -rf "$DIR"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
