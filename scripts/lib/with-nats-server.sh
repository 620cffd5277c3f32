# Sourced by the scripts that need a server: unless NATS_URL is set, starts a
# throw-away nats-server (installed if missing) on a random port with a temp
# dir, exports NATS_URL, and stops it when the calling script exits.

if [ -z "${NATS_URL:-}" ]; then
    NATS_SERVER_BIN="$(bash scripts/install-nats-server.sh | tail -n 1)"
    export NATS_SERVER_BIN
    nats_dir="$(mktemp -d)"
    nats_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$NATS_SERVER_BIN" -js -a 127.0.0.1 -p "$nats_port" -sd "$nats_dir" >"$nats_dir/nats-server.log" 2>&1 &
    nats_pid=$!
    trap 'kill "$nats_pid" 2>/dev/null || true; wait "$nats_pid" 2>/dev/null || true; rm -rf "$nats_dir"' EXIT
    export NATS_URL="nats://127.0.0.1:$nats_port"
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$nats_port") 2>/dev/null && break
        sleep 0.1
    done
    echo "nats-server (pid $nats_pid) on $NATS_URL" >&2
fi
