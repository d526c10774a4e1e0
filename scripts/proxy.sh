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
        # -d: stay in the foreground.
        if launch_listening proxy "$dir" "$port" "$PROXY_BIN" -d -c "$dir/tinyproxy.conf"; then
            watch_owner proxy "$(cd "$(dirname "$0")" && pwd)/$(basename "$0")" "$dir"
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
