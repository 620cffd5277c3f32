#!/usr/bin/env bash
# Runs the demo against $NATS_URL, or against a throw-away nats-server on a
# random port and a temp dir (installed if missing).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${NATS_URL:-}" ]; then
    NATS_SERVER_BIN="$(bash scripts/install-nats-server.sh | tail -n 1)"
    export NATS_SERVER_BIN
    dir="$(mktemp -d)"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    "$NATS_SERVER_BIN" -js -a 127.0.0.1 -p "$port" -sd "$dir" >"$dir/nats-server.log" 2>&1 &
    server_pid=$!
    trap 'kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
    export NATS_URL="nats://127.0.0.1:$port"
    for _ in $(seq 1 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
        sleep 0.1
    done
    echo "demo.sh: nats-server (pid $server_pid) on $NATS_URL" >&2
fi

cargo run --release --example quickstart
