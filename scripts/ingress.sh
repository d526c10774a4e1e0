#!/usr/bin/env bash
# Starts and stops throw-away Ingress stand-ins (Debian's nginx) bound to 127.0.0.1 for the
# tests and the bench: TLS with a CA of its own in front of a registry, configured as
# ingress-nginx configures a registry Ingress (no body size limit, HTTP/1.1 upstream, the
# client's Host and scheme passed on, HTTP/2 offered to clients).
#
#   scripts/ingress.sh start DIR --upstream URL [--request-buffering on|off]
#                                [--response-buffering on|off] [--no-http2] [--forbid-manifest-head]
#                                [--manifest-head-status CODE] [--no-forwarded-proto]
#                                [--client-max-body-size SIZE]
#       URL: http://HOST:PORT or https://HOST:PORT (the upstream's certificate is not checked).
#       Request buffering on (nginx's and ingress-nginx's default) reads a whole request body
#       into DIR/tmp before it sends any of it upstream; response buffering is off by default,
#       as ingress-nginx sets it. Config in DIR/nginx.conf, one line a request in
#       DIR/access.log ("METHOD URI STATUS BYTES-RECEIVED"), errors in DIR/error.log, pid in
#       DIR/pid. Prints PORT=, HOST=, URL=, CA=, PID= on stdout. --forbid-manifest-head answers
#       every HEAD of a manifest with 403, as some registries answer a push-only user (JFrog,
#       RTFACT-13797), while a GET or PUT of it goes through; --manifest-head-status CODE answers
#       them with CODE instead (405: a registry that does not take HEAD). --no-forwarded-proto leaves out
#       X-Forwarded-Proto, so a plain-HTTP registry behind it builds http:// upload URLs (a
#       TLS-terminating proxy that does not tell the registry it is reached over HTTPS).
#       --client-max-body-size SIZE (nginx's syntax: 1m) answers larger request bodies with 413,
#       as an Ingress without ingress-nginx's proxy-body-size annotation does (default 0: none).
#   scripts/ingress.sh stop DIR
#       TERM (then KILL) the nginx of DIR; fine if it is not running.
#
# With REGISTRY_OWNER_PID=N in the environment, start also leaves a watcher that stops nginx
# once process N is gone, so a test process that dies leaks no server.
set -euo pipefail

NGINX_BIN=${NGINX_BIN:-nginx}
die() { echo "ingress.sh: $*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

write_config() {
    local dir=$1 port=$2 upstream=$3 request_buffering=$4 response_buffering=$5 http2=$6 manifest_head_status=$7 forwarded_proto=$8 body_limit=$9
    local listen="listen 127.0.0.1:$port ssl" refusal="" proto_header='proxy_set_header X-Forwarded-Proto $scheme;'
    [[ $forwarded_proto == on ]] || proto_header=""
    [[ $http2 == on ]] && listen+=" http2"
    if [[ $manifest_head_status != off ]]; then
        refusal='set $refuse "";
        if ($request_method = HEAD) { set $refuse "head"; }
        if ($uri !~ "/manifests/") { set $refuse ""; }
        if ($refuse = head) { return '"$manifest_head_status"'; }'
    fi
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log warn;
events { worker_connections 1024; }
http {
    log_format requests '\$request_method \$request_uri \$status \$request_length';
    access_log $dir/access.log requests;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    server {
        $listen;
        ssl_certificate $dir/server.pem;
        ssl_certificate_key $dir/server.key;
        client_max_body_size $body_limit;
        proxy_request_buffering $request_buffering;
        proxy_buffering $response_buffering;
        proxy_http_version 1.1;
        proxy_connect_timeout 5s;
        proxy_send_timeout 600s;
        proxy_read_timeout 600s;
        $refusal
        location / {
            proxy_pass $upstream;
            proxy_ssl_verify off;
            proxy_set_header Host \$http_host;
            ${proto_header}
            proxy_set_header X-Forwarded-For \$remote_addr;
            proxy_set_header Connection "";
        }
    }
}
EOF
}

cmd_start() {
    [[ $# -ge 1 ]] || die "usage: ingress.sh start DIR --upstream URL [--request-buffering on|off] [--response-buffering on|off] [--no-http2] [--forbid-manifest-head] [--manifest-head-status CODE] [--no-forwarded-proto] [--client-max-body-size SIZE]"
    local dir=$1 upstream="" request_buffering=on response_buffering=off http2=on manifest_head_status=off forwarded_proto=on body_limit=0 port attempt i
    shift
    while [[ $# -gt 0 ]]; do
        case $1 in
            --upstream) [[ $# -ge 2 && $2 =~ ^https?://[^/]+$ ]] || die "--upstream takes http(s)://HOST:PORT"; upstream=$2; shift 2 ;;
            --request-buffering) [[ $# -ge 2 && $2 =~ ^(on|off)$ ]] || die "--request-buffering takes on or off"; request_buffering=$2; shift 2 ;;
            --response-buffering) [[ $# -ge 2 && $2 =~ ^(on|off)$ ]] || die "--response-buffering takes on or off"; response_buffering=$2; shift 2 ;;
            --no-http2) http2=off; shift ;;
            --forbid-manifest-head) manifest_head_status=403; shift ;;
            --manifest-head-status) [[ $# -ge 2 && $2 =~ ^[1-5][0-9][0-9]$ ]] || die "--manifest-head-status takes an HTTP status"; manifest_head_status=$2; shift 2 ;;
            --no-forwarded-proto) forwarded_proto=off; shift ;;
            --client-max-body-size) [[ $# -ge 2 && $2 =~ ^[0-9]+[kmg]?$ ]] || die "--client-max-body-size takes a size such as 1m"; body_limit=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    [[ -n $upstream ]] || die "give --upstream http(s)://HOST:PORT"
    command -v "$NGINX_BIN" >/dev/null || die "$NGINX_BIN is not installed (apt-get install nginx-light)"
    mkdir -p "$dir/tmp"
    dir=$(cd "$dir" && pwd)
    [[ -f $dir/server.pem ]] || make_tls "$dir"
    for attempt in 1 2 3 4 5; do
        port=$(pick_port)
        write_config "$dir" "$port" "$upstream" "$request_buffering" "$response_buffering" "$http2" "$manifest_head_status" "$forwarded_proto" "$body_limit"
        : >"$dir/access.log"
        # -e: the error log from the first line on (not the compiled-in /var/log/nginx).
        if launch_listening nginx "$dir" "$port" "$NGINX_BIN" -p "$dir" -e "$dir/error.log" -c "$dir/nginx.conf"; then
            watch_owner ingress "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" "$dir"
            echo "PORT=$port"
            echo "HOST=127.0.0.1:$port"
            echo "URL=https://127.0.0.1:$port"
            echo "CA=$dir/ca.pem"
            echo "PID=$(cat "$dir/pid")"
            return 0
        fi
        stop_pid_file "$dir/pid"
    done
    tail -n 20 "$dir/nginx.out" "$dir/error.log" >&2 2>/dev/null || true
    die "nginx did not start"
}

case ${1:-} in
    start) shift; cmd_start "$@" ;;
    stop) [[ $# -ge 2 ]] || die "usage: ingress.sh stop DIR"; stop_pid_file "$2/pid" ;;
    *) sed -n '2,28p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
