#!/usr/bin/env bash
# Starts and stops throw-away CNCF distribution registries (Debian's docker-registry 2.8)
# bound to 127.0.0.1, for the tests.
#
#   scripts/registry.sh start DIR [--tls] [--user NAME:PASSWORD]...
#                                [--token REALM_URL SERVICE ISSUER CERT_PEM] [--port N]
#       Fresh storage in DIR/storage, config in DIR/config.yml, log in DIR/registry.log,
#       pid in DIR/pid. Prints PORT=, HOST=, URL=, PID= (and CA= with --tls) on stdout.
#   scripts/registry.sh stop DIR
#       TERM (then KILL after 5 s) the registry of DIR; fine if it is not running.
#   scripts/registry.sh restart DIR
#       Stop, then start again on the same port with the same config and storage.
#   scripts/registry.sh status DIR
#       Prints the same lines as start if the registry answers, exits 1 otherwise.
#
# With REGISTRY_OWNER_PID=N in the environment, start also leaves a watcher (its pid, a
# process group leader, in DIR/watcher.pid) that stops the registry once process N is
# gone, so that a test process that crashes or is killed leaks no registry.
set -euo pipefail

REGISTRY_BIN=${REGISTRY_BIN:-docker-registry}
SELF="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
READY_TIMEOUT=${REGISTRY_READY_TIMEOUT:-10}

die() { echo "registry.sh: $*" >&2; exit 1; }

usage() {
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# Absolute path without requiring the path to exist yet.
abspath() {
    case "$1" in
        /*) printf '%s\n' "$1" ;;
        *) printf '%s/%s\n' "$PWD" "$1" ;;
    esac
}

source "$(dirname "${BASH_SOURCE[0]}")/service-lib.sh"

# True if PID is the registry serving DIR's config (guards against a recycled pid).
pid_is_ours() {
    local pid=$1 dir=$2
    [[ -r /proc/$pid/cmdline ]] || return 0 # no procfs: trust the pid file
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$dir/config.yml"
}

yaml_quote() {
    # Single-quoted YAML scalar.
    printf "'%s'" "${1//\'/\'\'}"
}

write_config() {
    local dir=$1 port=$2
    {
        echo "version: 0.1"
        echo "log:"
        echo "  level: info"
        echo "  formatter: text"
        echo "  fields:"
        echo "    service: registry"
        echo "storage:"
        echo "  filesystem:"
        echo "    rootdirectory: $(yaml_quote "$dir/storage")"
        echo "  delete:"
        echo "    enabled: true"
        echo "  maintenance:"
        echo "    uploadpurging:"
        echo "      enabled: false"
        echo "http:"
        echo "  addr: 127.0.0.1:$port"
        # A fixed secret so that upload sessions survive a restart.
        echo "  secret: $(yaml_quote "$SECRET")"
        echo "  headers:"
        echo "    X-Content-Type-Options: [nosniff]"
        if [[ $TLS == 1 ]]; then
            echo "  tls:"
            echo "    certificate: $(yaml_quote "$dir/server.pem")"
            echo "    key: $(yaml_quote "$dir/server.key")"
        fi
        if [[ ${#USERS[@]} -gt 0 ]]; then
            echo "auth:"
            echo "  htpasswd:"
            echo "    realm: dkp-test-registry"
            echo "    path: $(yaml_quote "$dir/htpasswd")"
        elif [[ -n $TOKEN_REALM ]]; then
            echo "auth:"
            echo "  token:"
            echo "    realm: $(yaml_quote "$TOKEN_REALM")"
            echo "    service: $(yaml_quote "$TOKEN_SERVICE")"
            echo "    issuer: $(yaml_quote "$TOKEN_ISSUER")"
            echo "    rootcertbundle: $(yaml_quote "$TOKEN_CERT")"
        fi
        echo "health:"
        echo "  storagedriver:"
        echo "    enabled: false"
    } >"$dir/config.yml.tmp"
    mv "$dir/config.yml.tmp" "$dir/config.yml"
}

make_htpasswd() {
    local dir=$1 entry name password
    : >"$dir/htpasswd"
    for entry in "${USERS[@]}"; do
        name=${entry%%:*}
        password=${entry#*:}
        [[ -n $name && $entry == *:* ]] || die "--user wants NAME:PASSWORD, got '$entry'"
        # -C 5: the cheapest cost htpasswd allows well; the registry checks it on each request.
        htpasswd -B -C 5 -b "$dir/htpasswd" "$name" "$password" >/dev/null 2>&1 \
            || die "htpasswd failed for user '$name'"
    done
}

# Launches the registry of DIR in its own session, detached from this script's
# stdio, and records its pid in DIR/pid.
launch() {
    local dir=$1
    rm -f "$dir/pid"
    # The inner shell writes its own pid and then execs the registry (same pid), after
    # closing every inherited descriptor above 2 (the caller's sockets and pipes).
    setsid nohup bash -c '
        for fd in /proc/$$/fd/*; do
            fd=${fd##*/}
            if [[ $fd -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        echo $$ >"$1/pid.tmp" && mv "$1/pid.tmp" "$1/pid"
        exec "$2" serve "$1/config.yml"
    ' registry "$dir" "$REGISTRY_BIN" </dev/null >>"$dir/registry.log" 2>&1 &
    local waited=0
    while [[ ! -s $dir/pid ]]; do
        sleep 0.01
        waited=$((waited + 1))
        [[ $waited -lt 500 ]] || die "the registry process did not start"
    done
}

# Waits until GET /v2/ answers 200 or 401. Returns 0 when ready, 1 when the process
# died (2 if of a port clash), 3 on timeout.
wait_ready() {
    local dir=$1 port=$2 scheme=$3 pid code deadline
    pid=$(cat "$dir/pid")
    local curl_args=(-s -o /dev/null -w '%{http_code}' --max-time 2 --noproxy '*')
    if [[ $scheme == https ]]; then curl_args+=(--cacert "$dir/ca.pem"); fi
    deadline=$(( $(date +%s%N) + READY_TIMEOUT * 1000000000 ))
    while :; do
        if ! pid_alive "$pid"; then
            if tail -n 3 "$dir/registry.log" 2>/dev/null | grep -q 'address already in use'; then
                return 2
            fi
            return 1
        fi
        code=$(curl "${curl_args[@]}" "$scheme://127.0.0.1:$port/v2/" 2>/dev/null || true)
        if [[ $code == 200 || $code == 401 ]]; then
            return 0
        fi
        if [[ $(date +%s%N) -gt $deadline ]]; then
            return 3
        fi
        sleep 0.05
    done
}

# Stops the registry of DIR when process OWNER exits (see REGISTRY_OWNER_PID above).
start_watcher() {
    local dir=$1 owner=$2 old
    [[ $owner =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null || return 0
    if [[ -f $dir/watcher.pid ]]; then
        old=$(cat "$dir/watcher.pid" 2>/dev/null || true)
        if [[ $old =~ ^[0-9]+$ ]] && pid_alive "$old"; then
            kill -TERM -- "-$old" 2>/dev/null || true
        fi
    fi
    setsid nohup bash -c '
        for fd in /proc/$$/fd/*; do
            fd=${fd##*/}
            if [[ $fd -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi
        done
        echo $$ >"$3/watcher.pid.tmp" && mv "$3/watcher.pid.tmp" "$3/watcher.pid"
        tail --pid="$1" -f /dev/null >/dev/null 2>&1 &
        wait $!
        exec bash "$2" stop "$3"
    ' registry-watcher "$owner" "$SELF" "$dir" </dev/null >/dev/null 2>&1 &
    local waited=0
    while [[ ! -s $dir/watcher.pid && $waited -lt 100 ]]; do
        sleep 0.01
        waited=$((waited + 1))
    done
}

print_info() {
    local dir=$1
    # shellcheck disable=SC1091
    source "$dir/registry.env"
    echo "PORT=$PORT"
    echo "HOST=127.0.0.1:$PORT"
    echo "URL=$SCHEME://127.0.0.1:$PORT"
    echo "PID=$(cat "$dir/pid")"
    if [[ $SCHEME == https ]]; then
        echo "CA=$dir/ca.pem"
    fi
}

fail_with_log() {
    local dir=$1 msg=$2
    echo "registry.sh: $msg" >&2
    if [[ -f $dir/registry.log ]]; then
        echo "--- tail of $dir/registry.log ---" >&2
        tail -n 30 "$dir/registry.log" >&2 || true
    fi
    exit 1
}

do_stop() {
    local dir=$1 pid i
    [[ -f $dir/pid ]] || return 0
    pid=$(cat "$dir/pid" 2>/dev/null || true)
    [[ $pid =~ ^[0-9]+$ ]] || { rm -f "$dir/pid"; return 0; }
    if pid_alive "$pid" && pid_is_ours "$pid" "$dir"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 1 250); do
            pid_alive "$pid" || break
            sleep 0.02
        done
        if pid_alive "$pid"; then
            kill -KILL "$pid" 2>/dev/null || true
            for i in $(seq 1 250); do
                pid_alive "$pid" || break
                sleep 0.02
            done
        fi
        pid_alive "$pid" && die "registry pid $pid would not die"
    fi
    rm -f "$dir/pid"
}

cmd_start() {
    [[ $# -ge 1 ]] || usage
    local dir
    dir=$(abspath "$1")
    shift
    TLS=0
    USERS=()
    TOKEN_REALM="" TOKEN_SERVICE="" TOKEN_ISSUER="" TOKEN_CERT=""
    local fixed_port=""
    while [[ $# -gt 0 ]]; do
        case "$1" in
            --tls) TLS=1; shift ;;
            --user)
                [[ $# -ge 2 ]] || die "--user wants NAME:PASSWORD"
                USERS+=("$2"); shift 2 ;;
            --token)
                [[ $# -ge 5 ]] || die "--token wants REALM_URL SERVICE ISSUER CERT_PEM"
                TOKEN_REALM=$2 TOKEN_SERVICE=$3 TOKEN_ISSUER=$4 TOKEN_CERT=$(abspath "$5")
                [[ -r $TOKEN_CERT ]] || die "token cert bundle $TOKEN_CERT is not readable"
                shift 5 ;;
            --port)
                [[ $# -ge 2 && $2 =~ ^[0-9]+$ ]] || die "--port wants a number"
                fixed_port=$2; shift 2 ;;
            *) die "unknown option '$1'" ;;
        esac
    done
    if [[ ${#USERS[@]} -gt 0 && -n $TOKEN_REALM ]]; then
        die "--user and --token exclude each other"
    fi

    mkdir -p "$dir"
    if [[ -f $dir/pid ]]; then
        do_stop "$dir"
    fi
    rm -rf "$dir/storage"
    mkdir -p "$dir/storage"
    : >"$dir/registry.log"
    SECRET=$(openssl rand -hex 24)
    local scheme=http
    if [[ $TLS == 1 ]]; then
        make_tls "$dir"
        scheme=https
    fi
    if [[ ${#USERS[@]} -gt 0 ]]; then
        make_htpasswd "$dir"
    fi

    local attempt port rc
    for attempt in 1 2 3 4 5 6 7 8; do
        if [[ -n $fixed_port ]]; then port=$fixed_port; else port=$(pick_port); fi
        write_config "$dir" "$port"
        printf 'PORT=%s\nSCHEME=%s\n' "$port" "$scheme" >"$dir/registry.env"
        launch "$dir"
        rc=0
        wait_ready "$dir" "$port" "$scheme" || rc=$?
        case $rc in
            0)
                start_watcher "$dir" "${REGISTRY_OWNER_PID:-}"
                print_info "$dir"
                return 0 ;;
            2)
                [[ -z $fixed_port ]] || fail_with_log "$dir" "port $port is taken"
                echo "registry.sh: port $port was taken, trying another one" >>"$dir/registry.log"
                rm -f "$dir/pid"
                continue ;;
            1) rm -f "$dir/pid"; fail_with_log "$dir" "the registry exited before answering" ;;
            *) do_stop "$dir"; fail_with_log "$dir" "the registry did not answer on port $port within ${READY_TIMEOUT}s" ;;
        esac
    done
    fail_with_log "$dir" "gave up after $attempt ports"
}

cmd_restart() {
    [[ $# -eq 1 ]] || usage
    local dir
    dir=$(abspath "$1")
    [[ -f $dir/config.yml && -f $dir/registry.env ]] || die "$dir holds no registry (start it first)"
    do_stop "$dir"
    # shellcheck disable=SC1091
    source "$dir/registry.env"
    local attempt rc
    # The old socket may linger a moment; retry the same port a few times.
    for attempt in 1 2 3 4 5 6 7 8 9 10; do
        launch "$dir"
        rc=0
        wait_ready "$dir" "$PORT" "$SCHEME" || rc=$?
        case $rc in
            0) print_info "$dir"; return 0 ;;
            2) rm -f "$dir/pid"; sleep 0.2; continue ;;
            1) rm -f "$dir/pid"; fail_with_log "$dir" "the registry exited before answering" ;;
            *) do_stop "$dir"; fail_with_log "$dir" "the registry did not answer on port $PORT within ${READY_TIMEOUT}s" ;;
        esac
    done
    fail_with_log "$dir" "port $PORT stayed taken"
}

cmd_stop() {
    [[ $# -eq 1 ]] || usage
    local dir
    dir=$(abspath "$1")
    do_stop "$dir"
}

cmd_status() {
    [[ $# -eq 1 ]] || usage
    local dir pid
    dir=$(abspath "$1")
    [[ -f $dir/pid && -f $dir/registry.env ]] || exit 1
    pid=$(cat "$dir/pid")
    pid_alive "$pid" || exit 1
    print_info "$dir"
}

[[ $# -ge 1 ]] || usage
command=$1
shift
case "$command" in
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_restart "$@" ;;
    status) cmd_status "$@" ;;
    -h|--help|help) usage ;;
    *) usage ;;
esac
