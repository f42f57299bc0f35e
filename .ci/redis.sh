#!/usr/bin/env bash
# Start or stop a throwaway redis-server for the Redis limiter tests (tests/redis).
#
#   .ci/redis.sh start   install Debian's redis-server if missing, start it daemonized on
#                        127.0.0.1:$REDIS_PORT (default 6390) with no persistence, and print
#                        the line to export: KEYAPI_TEST_REDIS_URL=redis://127.0.0.1:PORT/0
#   .ci/redis.sh stop    stop it (no save)
#
# The tests read KEYAPI_TEST_REDIS_URL; without it they start their own redis-server if one
# is on PATH, and skip otherwise.
set -euo pipefail

PORT="${REDIS_PORT:-6390}"
DIR="${REDIS_DIR:-/tmp/keyapi-async-redis-$PORT}"
PIDFILE="$DIR/redis.pid"

start() {
    if ! command -v redis-server >/dev/null 2>&1; then
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y redis-server
    fi
    mkdir -p "$DIR"
    if redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1; then
        echo "redis already answering on 127.0.0.1:$PORT" >&2
    else
        # No RDB snapshots, no AOF: the limiter's keys are short-lived by design.
        redis-server --bind 127.0.0.1 --port "$PORT" --protected-mode yes \
            --save '' --appendonly no --dir "$DIR" \
            --daemonize yes --pidfile "$PIDFILE" --logfile "$DIR/redis.log"
        for _ in $(seq 1 50); do
            redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null 2>&1 && break
            sleep 0.1
        done
        redis-cli -h 127.0.0.1 -p "$PORT" ping >/dev/null || {
            echo "redis-server did not start; see $DIR/redis.log" >&2
            exit 1
        }
    fi
    echo "KEYAPI_TEST_REDIS_URL=redis://127.0.0.1:$PORT/0"
}

stop() {
    if redis-cli -h 127.0.0.1 -p "$PORT" shutdown nosave >/dev/null 2>&1; then
        echo "redis on 127.0.0.1:$PORT stopped" >&2
    elif [ -f "$PIDFILE" ] && kill "$(cat "$PIDFILE")" 2>/dev/null; then
        echo "redis (pid $(cat "$PIDFILE")) stopped" >&2
    fi
    rm -f "$PIDFILE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
