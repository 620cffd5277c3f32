#!/usr/bin/env bash
# Runs every example that finishes by itself against a throw-away
# nats-server (or $NATS_URL), each with a time limit. Used by CI.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/with-nats-server.sh
source scripts/lib/target-dir.sh
cargo build --release --examples --bin parti
examples="$(cargo_target_dir)/release/examples"
run() {
    echo "== example $*" >&2
    timeout 120 "$examples/$@" >/dev/null
}
run quickstart
run closure_source
run dynamic_partitions
run jetstream_consumer
run custom_strategy
run zones
run kv_demo
RUN_FOR=3 LISTEN=127.0.0.1:0 run health_endpoint
RUN_FOR=3 LISTEN=127.0.0.1:0 run prometheus_metrics
run scale scale 5 200
run scale failover 2
run scale profiles 0 1
echo "examples: all ran" >&2
