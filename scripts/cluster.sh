#!/usr/bin/env bash
# A local 3-node JetStream cluster on 127.0.0.1, for trying parti against a
# cluster (R3 buckets: Config { replicas: 3, .. }, failover between nodes).
#
#   bash scripts/cluster.sh up       # start n0..n2, wait for JetStream, print NATS_URL
#   bash scripts/cluster.sh status   # which nodes run
#   bash scripts/cluster.sh down     # stop them and delete their storage
#
# Client ports PARTI_CLUSTER_PORT (default 4222) .. +2, route ports
# PARTI_CLUSTER_ROUTE_PORT (default 6222) .. +2; storage, logs and pid files
# in PARTI_CLUSTER_DIR (default ${TMPDIR:-/tmp}/parti-cluster). The server is
# found or installed by scripts/install-nats-server.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

port="${PARTI_CLUSTER_PORT:-4222}"
route_port="${PARTI_CLUSTER_ROUTE_PORT:-6222}"
dir="${PARTI_CLUSTER_DIR:-${TMPDIR:-/tmp}/parti-cluster}"
nodes=(0 1 2)

urls() {
    local out=() i
    for i in "${nodes[@]}"; do out+=("nats://127.0.0.1:$((port + i))"); done
    (IFS=,; echo "${out[*]}")
}

# The pid in node i's pid file if that process is still our nats-server.
node_pid() {
    local file="$dir/n$1.pid" pid
    [ -f "$file" ] || return 1
    pid="$(cat "$file")"
    [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q "nats-server.*--server_name n$1 " \
        && echo "$pid"
}

up() {
    local bin i routes=() pid
    bin="$(bash scripts/install-nats-server.sh | tail -n 1)"
    for i in "${nodes[@]}"; do routes+=("nats://127.0.0.1:$((route_port + i))"); done
    mkdir -p "$dir"
    for i in "${nodes[@]}"; do
        if pid="$(node_pid "$i")"; then
            echo "cluster: n$i already running (pid $pid)" >&2
            continue
        fi
        "$bin" -js -a 127.0.0.1 -p "$((port + i))" -sd "$dir/n$i" \
            --server_name "n$i" --cluster_name parti \
            --cluster "nats://127.0.0.1:$((route_port + i))" \
            --routes "$(IFS=,; echo "${routes[*]}")" \
            >"$dir/n$i.log" 2>&1 </dev/null &
        echo $! >"$dir/n$i.pid"
    done
    for i in "${nodes[@]}"; do
        if ! python3 scripts/lib/nats-ready.py "$((port + i))" 30; then
            echo "cluster: n$i did not serve JetStream within 30 s; its log:" >&2
            tail -n 20 "$dir/n$i.log" >&2
            exit 1
        fi
    done
    echo "cluster: 3 nodes serve JetStream (storage and logs in $dir)" >&2
    echo "export NATS_URL=$(urls)"
}

status() {
    local i pid running=0
    for i in "${nodes[@]}"; do
        if pid="$(node_pid "$i")"; then
            echo "n$i: running (pid $pid) on nats://127.0.0.1:$((port + i))"
            running=$((running + 1))
        else
            echo "n$i: stopped"
        fi
    done
    [ "$running" -gt 0 ] && echo "export NATS_URL=$(urls)"
    return 0
}

down() {
    local i pid
    for i in "${nodes[@]}"; do
        if pid="$(node_pid "$i")"; then
            kill "$pid"
            # Up to 10 s for a clean shutdown, then SIGKILL.
            for _ in $(seq 1 100); do
                kill -0 "$pid" 2>/dev/null || break
                sleep 0.1
            done
            kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
            echo "cluster: stopped n$i (pid $pid)" >&2
        fi
        rm -f "$dir/n$i.pid"
    done
    rm -rf "$dir"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    *)
        echo "usage: $0 up|status|down" >&2
        exit 2
        ;;
esac
