# Helpers shared by the scripts that start throw-away services on 127.0.0.1 for the tests
# (registry.sh, proxy.sh). Sourced, not run; callers define die().

# Every TCP port that something listens on (v4 and v6), one a line.
listening_ports() {
    ss -Htln 2>/dev/null | awk '{ n = split($4, a, ":"); print a[n] }' || true
}

pick_port() {
    local used port i
    used=$(listening_ports)
    for i in $(seq 1 200); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 41000 ))
        if ! grep -qx "$port" <<<"$used"; then
            echo "$port"
            return 0
        fi
    done
    die "no free port found"
}

# True if PID is alive and not a zombie.
pid_alive() {
    local pid=$1 state
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r /proc/$pid/stat ]]; then
        state=$(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null || echo X)
        [[ $state == Z || $state == X ]] && return 1
    fi
    return 0
}


# Shell code that closes every descriptor above 2, for `bash -c "$CLOSE_FDS; ..."` before a
# long-lived process starts: a pipe inherited from the caller would otherwise never see its end.
CLOSE_FDS='for fd in /proc/$$/fd/*; do fd=${fd##*/}; if [[ $fd -gt 2 ]]; then eval "exec $fd>&-" 2>/dev/null || true; fi; done'
