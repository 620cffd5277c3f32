#!/usr/bin/env bash
# Soak run (by hand, not in CI): a group of `parti worker` processes under
# periodic churn for N minutes, printing once a minute the threads and RSS of
# the one worker that is never killed, of all workers and of nats-server,
# the KV writes per second and the rebalances (assignment publications) per
# minute; then the first and the last minute side by side.
#
#   bash scripts/soak.sh                      # 30 min, 5 workers, fast profile
#   SOAK_MINUTES=60 SOAK_WORKERS=6 SOAK_CHURN_SECS=30 bash scripts/soak.sh
#
# Knobs (environment): SOAK_MINUTES (30), SOAK_WORKERS (5), SOAK_CHURN_SECS
# (60: every so often kill -9 one worker, round robin over all but worker 0,
# and start it again under its ID), SOAK_PARTITIONS (64), SOAK_PROFILE
# (fast | default: the timings of Config::fast() or Config::default()),
# PARTI_BIN (default: build the release `parti` binary).
#
# A worker that exits by itself (its start() failed, its ID was lost) is
# reported on stderr, counted and started again.
#
# KV writes/s come from the server: the sum of the last sequence numbers of
# the group's three KV streams (every put, create, update and delete adds one)
# per second. Rebalances: the growth of the `_meta` record's version.
set -euo pipefail
cd "$(dirname "$0")/.."

minutes="${SOAK_MINUTES:-30}"
workers="${SOAK_WORKERS:-5}"
churn="${SOAK_CHURN_SECS:-60}"
partitions="${SOAK_PARTITIONS:-64}"
profile="${SOAK_PROFILE:-fast}"
group="soak"

case "$profile" in
    fast) sets=(heartbeat_interval=200ms heartbeat_ttl=800ms election_ttl=1.2s emergency_grace=300ms
        operation_timeout=250ms cold_start_window=3s planned_scale_window=2s rebalance_cooldown=2s
        handoff_timeout=5s) ;;
    default) sets=() ;;
    *) echo "SOAK_PROFILE must be fast or default" >&2; exit 2 ;;
esac
set_flags=()
for s in "${sets[@]}"; do set_flags+=(--set "$s"); done

if [ -z "${PARTI_BIN:-}" ]; then
    source scripts/lib/target-dir.sh
    cargo build --release --quiet --bin parti
    PARTI_BIN="$(cargo_target_dir)/release/parti"
fi

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
dir="$(mktemp -d)"
port="$(free_port)"
mport="$(free_port)"
bin="$(bash scripts/install-nats-server.sh | tail -n 1)"
"$bin" -js -a 127.0.0.1 -p "$port" -m "$mport" -sd "$dir/js" >"$dir/nats-server.log" 2>&1 &
nats_pid=$!
url="nats://127.0.0.1:$port"

# The workers read stdin until it closes; one fifo held open here keeps
# them running until they are killed.
mkfifo "$dir/stdin"
exec 3<>"$dir/stdin"

pids=()
cleanup() {
    local p
    for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    kill "$nats_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$mport/healthz?js-enabled-only=true" >/dev/null && break
    sleep 0.1
done

start_worker() {
    "$PARTI_BIN" worker --server "$url" --group "$group" --partitions "$partitions" \
        --preferred-id "worker-$1" "${set_flags[@]}" <"$dir/stdin" >>"$dir/worker-$1.log" 2>&1 &
    pids[$1]=$!
}
for i in $(seq 0 $((workers - 1))); do start_worker "$i"; done

# Sum of the group's KV stream sequences: every write to its buckets.
kv_writes() {
    curl -sf "http://127.0.0.1:$mport/jsz?streams=true" | python3 -c '
import json, sys
d = json.load(sys.stdin)
print(sum(s["state"]["last_seq"] for a in d.get("account_details", [])
          for s in a.get("stream_detail", []) if s["name"].startswith("KV_parti-soak-")))'
}
meta_version() {
    "$PARTI_BIN" status --group "$group" --json --server "$url" 2>/dev/null \
        | python3 -c 'import json, sys; a = json.load(sys.stdin).get("assignment"); print(a["version"] if a else 0)' \
        || echo 0
}
proc_field() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }
sample() {
    local threads=0 rss=0 p
    for p in "${pids[@]}"; do
        threads=$((threads + $(proc_field "$p" Threads)))
        rss=$((rss + $(proc_field "$p" VmRSS)))
    done
    echo "$(proc_field "${pids[0]}" Threads) $(proc_field "${pids[0]}" VmRSS) $threads $rss $(proc_field "$nats_pid" VmRSS)"
}

echo "soak: $workers workers, $partitions partitions, profile $profile, churn every ${churn}s, $minutes min, $url"
printf '%-6s %-10s %-12s %-11s %-13s %-13s %-9s %-10s\n' minute w0_threads w0_rss_kib all_threads all_rss_kib nats_rss_kib kv_w/s rebal/min
lines=()
next_victim=1
exits=0
last_churn=$(date +%s)
writes0=$(kv_writes || echo 0)
version0=$(meta_version)
for minute in $(seq 1 "$minutes"); do
    minute_end=$(( $(date +%s) + 60 ))
    while [ "$(date +%s)" -lt "$minute_end" ]; do
        sleep 1
        # A worker that exited by itself (e.g. start() failed) is counted
        # and started again at once.
        for i in "${!pids[@]}"; do
            if ! kill -0 "${pids[$i]}" 2>/dev/null; then
                wait "${pids[$i]}" 2>/dev/null || true
                exits=$((exits + 1))
                echo "worker-$i exited by itself: $(tail -n 1 "$dir/worker-$i.log" | cut -c1-200)" >&2
                start_worker "$i"
            fi
        done
        if [ "$workers" -gt 1 ] && [ $(( $(date +%s) - last_churn )) -ge "$churn" ]; then
            kill -9 "${pids[$next_victim]}" 2>/dev/null || true
            wait "${pids[$next_victim]}" 2>/dev/null || true
            sleep 2
            start_worker "$next_victim"
            next_victim=$(( next_victim % (workers - 1) + 1 ))
            last_churn=$(date +%s)
        fi
    done
    writes=$(kv_writes || echo "$writes0")
    version=$(meta_version)
    read -r w0t w0r allt allr natsr <<<"$(sample)"
    line=$(printf '%-6s %-10s %-12s %-11s %-13s %-13s %-9s %-10s' "$minute" "$w0t" "$w0r" "$allt" "$allr" "$natsr" \
        "$(python3 -c "print(round(($writes - $writes0) / 60, 1))")" "$((version - version0))")
    echo "$line"
    lines+=("$line")
    writes0=$writes
    version0=$version
done
echo "first and last minute:"
echo "${lines[0]}"
echo "${lines[-1]}"
errors=$(cat "$dir"/worker-*.log | grep -c '"event":"error"' || true)
echo "error events in worker output: $errors"
echo "workers that exited by themselves (restarted): $exits"
