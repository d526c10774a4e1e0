# Helpers shared by the scripts that start throw-away services on 127.0.0.1 for the tests
# (registry.sh, proxy.sh, ingress.sh). Sourced, not run; callers define die().

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

# make_tls DIR: a CA of its own (DIR/ca.pem, DIR/ca.key) and a server certificate it signed for
# 127.0.0.1 and localhost (DIR/server.pem, DIR/server.key).
make_tls() {
    local dir=$1
    local ext="$dir/openssl-ext.cnf"
    cat >"$ext" <<'EOF'
[ ca_ext ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign, digitalSignature
subjectKeyIdentifier = hash
[ server_ext ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature, keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1, DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF
    # EC P-256 keys: much faster to make than RSA, accepted by Go, OpenSSL and BoringSSL.
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" -days 3650 \
        -subj "/CN=dkp-mirror test CA $(basename "$dir")" \
        -config "$ext" -extensions ca_ext -set_serial "0x$(openssl rand -hex 15)" \
        >/dev/null 2>"$dir/openssl.log" || { cat "$dir/openssl.log" >&2; die "could not make the CA"; }
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
        -keyout "$dir/server.key" -out "$dir/server.csr" -subj "/CN=127.0.0.1" \
        -config "$ext" \
        >/dev/null 2>>"$dir/openssl.log" || { cat "$dir/openssl.log" >&2; die "could not make the server key"; }
    openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -set_serial "0x$(openssl rand -hex 15)" -days 825 -sha256 \
        -extfile "$ext" -extensions server_ext -out "$dir/server.pem" \
        >/dev/null 2>>"$dir/openssl.log" || { cat "$dir/openssl.log" >&2; die "could not sign the server cert"; }
    rm -f "$dir/server.csr"
    chmod 600 "$dir/ca.key" "$dir/server.key"
}

# stop_pid_file FILE: TERM the process whose pid FILE holds, KILL it after 2 s; fine if it is gone.
stop_pid_file() {
    local file=$1 pid i
    [[ -f $file ]] || return 0
    pid=$(cat "$file" 2>/dev/null || true)
    rm -f "$file"
    [[ $pid =~ ^[0-9]+$ ]] && pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for i in $(seq 1 100); do pid_alive "$pid" || return 0; sleep 0.02; done
    kill -KILL "$pid" 2>/dev/null || true
}

# launch_listening NAME DIR PORT CMD...: starts CMD in a session of its own (its pid in
# DIR/pid, its output appended to DIR/NAME.out) and waits up to 5 s for PORT to listen; true
# when it does. Descriptors above 2 are closed first: an inherited pipe of the caller's would
# never see its end. CMD must stay in the foreground, so the pid written is the server's own.
launch_listening() {
  local name=$1 dir=$2 port=$3 i
  shift 3
  rm -f "$dir/pid"
  setsid nohup bash -c "$CLOSE_FDS"'; echo $$ >"$1/pid"; shift; exec "$@"' "$name" "$dir" "$@" \
    </dev/null >>"$dir/$name.out" 2>&1 &
  for i in $(seq 1 250); do
    [[ -s $dir/pid ]] && listening_ports | grep -qx "$port" && break
    sleep 0.02
  done
  [[ -s $dir/pid ]] && pid_alive "$(cat "$dir/pid")" && listening_ports | grep -qx "$port"
}

# watch_owner NAME SCRIPT DIR: with REGISTRY_OWNER_PID=N in the environment, leaves a watcher
# that runs `SCRIPT stop DIR` once process N is gone, so a test process that dies leaks no server.
watch_owner() {
  local owner=${REGISTRY_OWNER_PID:-}
  [[ $owner =~ ^[0-9]+$ ]] && kill -0 "$owner" 2>/dev/null || return 0
  setsid nohup bash -c "$CLOSE_FDS"'; tail --pid="$1" -f /dev/null; exec bash "$2" stop "$3"' "$1-watcher" \
    "$owner" "$2" "$3" </dev/null >/dev/null 2>&1 &
}
