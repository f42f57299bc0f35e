#!/usr/bin/env bash
# Install nginx, or start/stop a throwaway nginx with a strict limit_req in front of an origin.
#
#   .ci/nginx.sh install  install Debian's nginx if it is missing (apt-get) and print the
#                         line to export: KEYAPI_TEST_NGINX=/path/to/nginx
#   .ci/nginx.sh start    also run nginx daemonized on 127.0.0.1:$NGINX_PORT (default 6480)
#                         with its own prefix, conf, pid and logs under $NGINX_DIR (default
#                         /tmp/keyapi-async-nginx-PORT): `limit_req` at $NGINX_RATE r/s
#                         (default 50, no burst, answering 429) keyed by the Authorization
#                         header, proxying to $NGINX_UPSTREAM (default 127.0.0.1:6481, e.g.
#                         `python -m keyapi_async.testing --port 6481`)
#   .ci/nginx.sh stop     stop it
#
# The system nginx configuration is never read or changed (-p/-c/-e point at $NGINX_DIR).
# The benchmarks and tests/gateways write their own configurations per cell and run nginx
# in the foreground themselves (benchmarks/nginx.py); they only need the binary.
set -euo pipefail

PORT="${NGINX_PORT:-6480}"
RATE="${NGINX_RATE:-50}"
UPSTREAM="${NGINX_UPSTREAM:-127.0.0.1:6481}"
DIR="${NGINX_DIR:-/tmp/keyapi-async-nginx-$PORT}"

find_nginx() {
    command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; } || true
}

install() {
    local exe
    exe="$(find_nginx)"
    if [ -z "$exe" ]; then
        # The package's post-install may try to start the system service (port 80); a
        # container without an init system just reports that and carries on.
        apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends nginx
        exe="$(find_nginx)"
    fi
    [ -n "$exe" ] || { echo "nginx could not be installed" >&2; exit 1; }
    echo "KEYAPI_TEST_NGINX=$exe"
}

start() {
    local line exe
    line="$(install)"
    exe="${line#KEYAPI_TEST_NGINX=}"
    mkdir -p "$DIR/tmp"
    chmod 755 "$DIR" "$DIR/tmp"
    cat >"$DIR/nginx.conf" <<CONF
worker_processes 1;
pid $DIR/nginx.pid;
error_log $DIR/error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $DIR/tmp/body;
    proxy_temp_path $DIR/tmp/proxy;
    fastcgi_temp_path $DIR/tmp/fastcgi;
    uwsgi_temp_path $DIR/tmp/uwsgi;
    scgi_temp_path $DIR/tmp/scgi;
    limit_req_status 429;
    limit_req_log_level info;
    limit_req_zone \$http_authorization zone=strict:1m rate=${RATE}r/s;
    upstream origin { server $UPSTREAM; keepalive 64; }
    server {
        listen 127.0.0.1:$PORT;
        location / {
            limit_req zone=strict;
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
CONF
    if [ -f "$DIR/nginx.pid" ] && kill -0 "$(cat "$DIR/nginx.pid")" 2>/dev/null; then
        echo "nginx already running (pid $(cat "$DIR/nginx.pid")) on 127.0.0.1:$PORT" >&2
    else
        "$exe" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log"
        for _ in $(seq 1 50); do
            (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
            sleep 0.1
        done
        (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || {
            echo "nginx did not start; see $DIR/error.log" >&2
            exit 1
        }
        echo "nginx on 127.0.0.1:$PORT: limit_req ${RATE}r/s, no burst -> $UPSTREAM" >&2
    fi
    echo "$line"
}

stop() {
    local exe
    exe="$(find_nginx)"
    if [ -f "$DIR/nginx.pid" ]; then
        if [ -n "$exe" ] && "$exe" -p "$DIR" -c "$DIR/nginx.conf" -e "$DIR/error.log" -s quit 2>/dev/null; then
            echo "nginx on 127.0.0.1:$PORT stopped" >&2
        elif kill "$(cat "$DIR/nginx.pid")" 2>/dev/null; then
            echo "nginx (pid $(cat "$DIR/nginx.pid")) stopped" >&2
        fi
    fi
    for _ in $(seq 1 50); do
        [ -f "$DIR/nginx.pid" ] || break
        sleep 0.1
    done
}

case "${1:-}" in
    install) install ;;
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 install|start|stop" >&2; exit 2 ;;
esac
