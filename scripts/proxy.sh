#!/usr/bin/env bash
# Starts and stops throw-away HTTP proxies (Debian's tinyproxy) bound to 127.0.0.1, for the
# tests: plain HTTP forwarding and CONNECT to any port, optionally with BasicAuth.
#
#   scripts/proxy.sh start DIR [--user NAME:PASSWORD]
#       Config in DIR/tinyproxy.conf, log in DIR/tinyproxy.log (a line "Request (file
#       descriptor N): METHOD TARGET HTTP/1.1" for every request, CONNECT included), pid in
#       DIR/pid. Prints PORT=, HOST=, URL=, PID= on stdout.
#   scripts/proxy.sh stop DIR
#       TERM (then KILL) the proxy of DIR; fine if it is not running.
#
# With REGISTRY_OWNER_PID=N in the environment, start also leaves a watcher that stops the
# proxy once process N is gone, so a test process that dies leaks no proxy.
set -euo pipefail

PROXY_BIN=${PROXY_BIN:-tinyproxy}
die() { echo "proxy.sh: $*" >&2; exit 1; }
source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

write_config() {
    local dir=$1 port=$2 user=$3
    {
        echo "Port $port"
        echo "Listen 127.0.0.1"
        echo "Timeout 600"
        echo "LogFile \"$dir/tinyproxy.log\""
        echo "LogLevel Connect"
        echo "MaxClients 256"
        echo "Allow 127.0.0.1"
        echo "DisableViaHeader Yes"
        # No ConnectPort line: CONNECT is allowed to every port (the registries use random ones).
        if [[ -n $user ]]; then echo "BasicAuth ${user%%:*} ${user#*:}"; fi
    } >"$dir/tinyproxy.conf"
}

cmd_start() {
    [[ $# -ge 1 ]] || die "usage: proxy.sh start DIR [--user NAME:PASSWORD]"
    local dir=$1 user="" port attempt i
    shift
    while [[ $# -gt 0 ]]; do
        case $1 in
            --user) [[ $# -ge 2 && $2 == *:* ]] || die "--user takes NAME:PASSWORD"; user=$2; shift 2 ;;
            *) die "unknown option $1" ;;
        esac
    done
    command -v "$PROXY_BIN" >/dev/null || die "$PROXY_BIN is not installed (apt-get install tinyproxy)"
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    for attempt in 1 2 3 4 5; do
        port=$(pick_port)
        write_config "$dir" "$port" "$user"
        : >"$dir/tinyproxy.log"
        rm -f "$dir/pid"
        # -d: stay in the foreground, so the pid written is the proxy's own. Descriptors above 2
        # are closed first: an inherited pipe of the caller's would never see its end.
        setsid nohup bash -c "$CLOSE_FDS"'; echo $$ >"$1/pid"; exec "$2" -d -c "$1/tinyproxy.conf"' proxy "$dir" "$PROXY_BIN" \
            </dev/null >>"$dir/proxy.out" 2>&1 &
        for i in $(seq 1 250); do
            [[ -s $dir/pid ]] && listening_ports | grep -qx "$port" && break
            sleep 0.02
        done
        if [[ -s $dir/pid ]] && pid_alive "$(cat "$dir/pid")" && listening_ports | grep -qx "$port"; then
            local owner=${REGISTRY_OWNER_PID:-}
            if [[ $owner =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null; then
                setsid nohup bash -c "$CLOSE_FDS"'; tail --pid="$1" -f /dev/null; exec bash "$2" stop "$3"' proxy-watcher \
                    "$owner" "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" "$dir" </dev/null >/dev/null 2>&1 &
            fi
            echo "PORT=$port"
            echo "HOST=127.0.0.1:$port"
            echo "URL=http://127.0.0.1:$port"
            echo "PID=$(cat "$dir/pid")"
            return 0
        fi
        stop_pid_file "$dir/pid"
    done
    tail -n 20 "$dir/proxy.out" "$dir/tinyproxy.log" >&2 2>/dev/null || true
    die "tinyproxy did not start"
}

case ${1:-} in
    start) shift; cmd_start "$@" ;;
    stop) [[ $# -ge 2 ]] || die "usage: proxy.sh stop DIR"; stop_pid_file "$2/pid" ;;
    *) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
